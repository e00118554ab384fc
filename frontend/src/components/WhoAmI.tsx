import { useWhoAmI } from "../queries";
import { requestToken } from "./TokenPrompt";

/** Who the API takes this tab for: the Kubernetes user (groups on hover), or the token's name. */
export function WhoAmI() {
  const me = useWhoAmI();
  if (!me.data) return null;
  return (
    <button
      type="button"
      className="whoami"
      title={me.data.groups.length ? `Groups: ${me.data.groups.join(", ")}\nClick to use another token` : "Click to use another token"}
      onClick={requestToken}
    >
      {me.data.name}
    </button>
  );
}
