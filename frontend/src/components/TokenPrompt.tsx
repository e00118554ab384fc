import { useEffect, useRef, useState, useSyncExternalStore } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { setToken } from "../api";

// Any 401 from the API opens this dialog; the token is kept for this browser tab only.
let open = false;
let listeners: (() => void)[] = [];
const notify = () => listeners.forEach((l) => l());

export function requestToken() {
  if (!open) {
    open = true;
    notify();
  }
}

function subscribe(listener: () => void) {
  listeners.push(listener);
  return () => {
    listeners = listeners.filter((l) => l !== listener);
  };
}

export function TokenPrompt() {
  const isOpen = useSyncExternalStore(subscribe, () => open);
  const [value, setValue] = useState("");
  const dialog = useRef<HTMLDialogElement>(null);
  const queries = useQueryClient();

  useEffect(() => {
    if (isOpen && !dialog.current?.open) dialog.current?.showModal();
    if (!isOpen && dialog.current?.open) dialog.current.close();
  }, [isOpen]);

  return (
    <dialog ref={dialog} aria-labelledby="token-title" onCancel={(e) => e.preventDefault()}>
      <form
        method="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          setToken(value.trim() || null);
          open = false;
          notify();
          setValue("");
          void queries.invalidateQueries();
        }}
      >
        <h2 id="token-title">This Trawl API needs a token</h2>
        <p>
          Paste a bearer token: in a cluster, <code>kubectl create token &lt;service-account&gt; --audience trawl</code>{" "}
          (what you may see follows that account&apos;s RBAC); otherwise one from the API&apos;s tokens file. It is kept
          for this tab only.
        </p>
        <label>
          Token
          <input type="password" autoFocus value={value} onChange={(e) => setValue(e.target.value)} required />
        </label>
        <button type="submit">Use token</button>
      </form>
    </dialog>
  );
}
