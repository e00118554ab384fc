import type { ReactNode } from "react";
import { useSearchParams } from "react-router-dom";
import type { DnsEvent, EventEndpoints, HttpEvent, TlsEvent } from "../api";
import { FilterBar } from "../components/FilterBar";
import { LoadMore } from "../components/LoadMore";
import { Empty, ErrorState, Loading } from "../components/States";
import { endpoint, formatMillis, formatTime } from "../format";
import { useEvents } from "../queries";
import { useFilters } from "../useFilters";

// One tab per protocol, as Zeek's dns.log, http.log and ssl.log: each row one exchange. HTTP
// holds HTTP/1.x requests and HTTP/2 streams; gRPC is the same route narrowed to gRPC's calls.
const TABS = [
  { key: "dns", label: "DNS", route: "dns", protocol: undefined },
  { key: "http", label: "HTTP", route: "http", protocol: undefined },
  { key: "grpc", label: "gRPC", route: "http", protocol: "grpc" },
  { key: "tls", label: "TLS", route: "tls", protocol: undefined },
] as const;
type Tab = (typeof TABS)[number]["key"];

export function Events() {
  const [filters, setFilters] = useFilters();
  const [search, setSearch] = useSearchParams();
  const chosen = TABS.find((t) => t.key === search.get("tab")) ?? TABS[0];
  const tab: Tab = chosen.key;
  const events = useEvents(chosen.route, chosen.protocol, filters);
  const choose = (key: Tab) =>
    setSearch((current) => {
      const next = new URLSearchParams(current);
      next.set("tab", key);
      return next;
    });
  const rows = events.rows;
  return (
    <section aria-labelledby="events-title">
      <h1 id="events-title" className="visually-hidden">
        Events
      </h1>
      <FilterBar filters={filters} onApply={setFilters} />
      <div role="tablist" aria-label="Protocol" className="tabs">
        {TABS.map((t) => (
          <button
            key={t.key}
            type="button"
            role="tab"
            aria-selected={tab === t.key}
            className={tab === t.key ? "tab active" : "tab"}
            onClick={() => choose(t.key)}
          >
            {t.label}
          </button>
        ))}
      </div>
      <div role="tabpanel" aria-label={`${TABS.find((t) => t.key === tab)?.label} events`}>
        {events.isPending && <Loading what="events" />}
        {events.isError && <ErrorState error={events.error} />}
        {events.isSuccess && rows.length === 0 && (
          <Empty>
            <p>No {chosen.label} events match these filters.</p>
            <p>Widen the time range, clear a filter, or pick another protocol.</p>
          </Empty>
        )}
        {rows.length > 0 && tab === "dns" && <EventTable rows={rows as DnsEvent[]} columns={DNS_COLUMNS} />}
        {rows.length > 0 && tab === "http" && <EventTable rows={rows as HttpEvent[]} columns={HTTP_COLUMNS} />}
        {rows.length > 0 && tab === "grpc" && <EventTable rows={rows as HttpEvent[]} columns={GRPC_COLUMNS} />}
        {rows.length > 0 && tab === "tls" && <EventTable rows={rows as TlsEvent[]} columns={TLS_COLUMNS} />}
      </div>
      <LoadMore list={events} what="events" />
    </section>
  );
}

interface Column<T> {
  header: string;
  cell: (event: T) => ReactNode;
  className?: string;
}

// The endpoint columns every event has, then each protocol's own.
function EventTable<T extends EventEndpoints>({ rows, columns }: { rows: T[]; columns: Column<T>[] }) {
  return (
    <table className="grid">
      <thead>
        <tr>
          <th scope="col">Time</th>
          <th scope="col">Client</th>
          <th scope="col">Server</th>
          {columns.map((c) => (
            <th key={c.header} scope="col">
              {c.header}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        {rows.map((e) => (
          <tr key={e.id}>
            <td>{formatTime(e.ts)}</td>
            <td>{endpoint(e.client, e.client_port)}</td>
            <td>{endpoint(e.server, e.server_port)}</td>
            {columns.map((c) => (
              <td key={c.header} className={c.className}>
                {c.cell(e)}
              </td>
            ))}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

const noResponse = <small>no response seen</small>;

const DNS_COLUMNS: Column<DnsEvent>[] = [
  { header: "Transport", cell: (e) => e.transport },
  { header: "Name", cell: (e) => e.query },
  { header: "Type", cell: (e) => e.query_type },
  { header: "Response", cell: (e) => e.rcode ?? noResponse },
  { header: "Answers", cell: (e) => e.answers?.join(", ") },
  { header: "Time to answer", cell: (e) => formatMillis(e.rtt_ms) },
];

const PROTOCOL_NAMES: Record<string, string> = { http: "HTTP/1", http2: "HTTP/2", grpc: "gRPC" };

const HTTP_COLUMNS: Column<HttpEvent>[] = [
  { header: "Protocol", cell: (e) => PROTOCOL_NAMES[e.protocol] ?? e.protocol },
  { header: "Transport", cell: (e) => e.transport },
  { header: "Method", cell: (e) => e.method },
  { header: "Host", cell: (e) => e.host },
  { header: "Path", cell: (e) => e.path, className: "wrap" },
  { header: "Status", cell: (e) => e.status ?? noResponse },
  { header: "Latency", cell: (e) => formatMillis(e.latency_ms) },
  { header: "User agent", cell: (e) => e.user_agent, className: "wrap" },
];

// A gRPC call: its status is gRPC's own (0 is OK), from the trailers.
const GRPC_COLUMNS: Column<HttpEvent>[] = [
  { header: "Service", cell: (e) => e.grpc_service },
  { header: "Method", cell: (e) => e.grpc_method },
  { header: "Authority", cell: (e) => e.host },
  { header: "gRPC status", cell: (e) => e.grpc_status ?? e.reset ?? noResponse },
  { header: "Message", cell: (e) => e.grpc_message, className: "wrap" },
  { header: "Messages", cell: (e) => `${e.request_messages ?? "?"} → ${e.response_messages ?? "?"}` },
  { header: "Latency", cell: (e) => formatMillis(e.latency_ms) },
];

const TLS_COLUMNS: Column<TlsEvent>[] = [
  { header: "Transport", cell: (e) => (e.transport === "quic" ? "QUIC" : "TCP") },
  { header: "Server name", cell: (e) => e.sni },
  { header: "ALPN", cell: (e) => e.alpn.join(", ") },
  { header: "Version", cell: (e) => e.version },
  { header: "JA4", cell: (e) => <code>{e.ja4}</code> },
];
