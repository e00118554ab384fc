import { useState } from "react";
import type { FilterKey, Filters } from "../filters";
import { useSessions } from "../queries";

const FIELDS: { key: FilterKey; label: string; placeholder: string; width?: string }[] = [
  { key: "since", label: "Since", placeholder: "15m or 2026-11-27T10:00:00Z", width: "9rem" },
  { key: "until", label: "Until", placeholder: "now" , width: "9rem"},
  { key: "namespace", label: "Namespace", placeholder: "shop", width: "8rem" },
  { key: "workload", label: "Workload", placeholder: "shop/checkout", width: "9rem" },
  { key: "pod", label: "Pod", placeholder: "shop/checkout-7d9f8-x2x7q", width: "9rem" },
  { key: "service", label: "Service", placeholder: "shop/checkout", width: "9rem" },
  { key: "host", label: "Host", placeholder: "10.0.0.5 or 10.0.0.0/24" },
  { key: "src", label: "Source", placeholder: "address or network" },
  { key: "dst", label: "Destination", placeholder: "address or network" },
  { key: "port", label: "Port", placeholder: "443", width: "5rem" },
  { key: "protocol", label: "Protocol", placeholder: "tcp, dns, tls…", width: "7rem" },
];

/** The shared filters as a form; nothing is applied until the form is submitted. */
export function FilterBar({
  filters,
  onApply,
  fields = FIELDS.map((f) => f.key),
}: {
  filters: Filters;
  onApply: (next: Filters) => void;
  fields?: FilterKey[];
}) {
  const [draft, setDraft] = useState<Filters>(filters);
  const [applied, setApplied] = useState(filters);
  // The URL changed underneath (back button, a link): show what is applied now.
  if (applied !== filters) {
    setApplied(filters);
    setDraft(filters);
  }
  const sessions = useSessions();
  const set = (key: FilterKey, value: string) => setDraft((d) => ({ ...d, [key]: value }));
  return (
    <form
      className="filters"
      aria-label="Filters"
      onSubmit={(e) => {
        e.preventDefault();
        onApply(draft);
      }}
    >
      <label>
        Session
        <select value={draft.session ?? ""} onChange={(e) => onApply({ ...draft, session: e.target.value })}>
          <option value="">All sessions</option>
          {sessions.data?.items.map((s) => (
            <option key={s.key} value={s.key}>
              {s.key}
              {s.deleted_at ? " (deleted)" : ""}
            </option>
          ))}
        </select>
      </label>
      {FIELDS.filter((f) => fields.includes(f.key)).map((field) => (
        <label key={field.key}>
          {field.label}
          <input
            value={draft[field.key] ?? ""}
            placeholder={field.placeholder}
            style={field.width ? { width: field.width } : undefined}
            onChange={(e) => set(field.key, e.target.value)}
          />
        </label>
      ))}
      {fields.includes("q") && (
        <label className="grow">
          Filter expression
          <input
            value={draft.q ?? ""}
            placeholder="tcp and port 443 and not host 10.0.0.5"
            onChange={(e) => set("q", e.target.value)}
            spellCheck={false}
          />
        </label>
      )}
      <button type="submit">Apply</button>
    </form>
  );
}
