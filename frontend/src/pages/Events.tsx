import { useSearchParams } from "react-router-dom";
import { useInfiniteQuery } from "@tanstack/react-query";
import { type DnsEvent, getJson, type HttpEvent, type Page, type TlsEvent } from "../api";
import { FilterBar } from "../components/FilterBar";
import { Empty, ErrorState, Loading } from "../components/States";
import { apiQuery } from "../filters";
import { endpoint, formatMillis, formatTime } from "../format";
import { useFilters } from "../useFilters";

// One tab per protocol, as Zeek's dns.log, http.log and ssl.log: each row one exchange.
const TABS = [
  { key: "dns", label: "DNS" },
  { key: "http", label: "HTTP" },
  { key: "tls", label: "TLS" },
] as const;
type Tab = (typeof TABS)[number]["key"];

export function Events() {
  const [filters, setFilters] = useFilters();
  const [search, setSearch] = useSearchParams();
  const tab: Tab = TABS.find((t) => t.key === search.get("tab"))?.key ?? "dns";
  const events = useInfiniteQuery({
    queryKey: ["events", tab, filters],
    queryFn: ({ pageParam, signal }) =>
      getJson<Page<DnsEvent | HttpEvent | TlsEvent>>(
        `/api/v1/events/${tab}?${apiQuery(filters, { limit: 200, cursor: pageParam })}`,
        signal,
      ),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.next_cursor ?? undefined,
    refetchInterval: 10_000,
  });
  const choose = (key: Tab) =>
    setSearch((current) => {
      const next = new URLSearchParams(current);
      next.set("tab", key);
      return next;
    });
  const rows = events.data?.pages.flatMap((p) => p.items) ?? [];
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
            <p>No {tab.toUpperCase()} events match these filters.</p>
            <p>Widen the time range, clear a filter, or pick another protocol.</p>
          </Empty>
        )}
        {rows.length > 0 && tab === "dns" && <DnsTable rows={rows as DnsEvent[]} />}
        {rows.length > 0 && tab === "http" && <HttpTable rows={rows as HttpEvent[]} />}
        {rows.length > 0 && tab === "tls" && <TlsTable rows={rows as TlsEvent[]} />}
      </div>
      {events.hasNextPage && (
        <button type="button" onClick={() => void events.fetchNextPage()} disabled={events.isFetchingNextPage}>
          {events.isFetchingNextPage ? "Loading…" : "Load more events"}
        </button>
      )}
    </section>
  );
}

function DnsTable({ rows }: { rows: DnsEvent[] }) {
  return (
    <table className="grid">
      <thead>
        <tr>
          <th scope="col">Time</th>
          <th scope="col">Client</th>
          <th scope="col">Server</th>
          <th scope="col">Name</th>
          <th scope="col">Type</th>
          <th scope="col">Response</th>
          <th scope="col">Answers</th>
          <th scope="col">Time to answer</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((e) => (
          <tr key={e.id}>
            <td>{formatTime(e.ts)}</td>
            <td>{endpoint(e.client, e.client_port)}</td>
            <td>
              {endpoint(e.server, e.server_port)} <small>{e.transport}</small>
            </td>
            <td>{e.query}</td>
            <td>{e.query_type}</td>
            <td>{e.rcode ?? <small>no response seen</small>}</td>
            <td>{e.answers?.join(", ")}</td>
            <td>{formatMillis(e.rtt_ms)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function HttpTable({ rows }: { rows: HttpEvent[] }) {
  return (
    <table className="grid">
      <thead>
        <tr>
          <th scope="col">Time</th>
          <th scope="col">Client</th>
          <th scope="col">Server</th>
          <th scope="col">Method</th>
          <th scope="col">Host</th>
          <th scope="col">Path</th>
          <th scope="col">Status</th>
          <th scope="col">Latency</th>
          <th scope="col">User agent</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((e) => (
          <tr key={e.id}>
            <td>{formatTime(e.ts)}</td>
            <td>{endpoint(e.client, e.client_port)}</td>
            <td>{endpoint(e.server, e.server_port)}</td>
            <td>{e.method}</td>
            <td>{e.host}</td>
            <td className="wrap">{e.path}</td>
            <td>{e.status ?? <small>no response seen</small>}</td>
            <td>{formatMillis(e.latency_ms)}</td>
            <td className="wrap">{e.user_agent}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function TlsTable({ rows }: { rows: TlsEvent[] }) {
  return (
    <table className="grid">
      <thead>
        <tr>
          <th scope="col">Time</th>
          <th scope="col">Client</th>
          <th scope="col">Server</th>
          <th scope="col">Server name</th>
          <th scope="col">ALPN</th>
          <th scope="col">Version</th>
          <th scope="col">JA4</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((e) => (
          <tr key={e.id}>
            <td>{formatTime(e.ts)}</td>
            <td>{endpoint(e.client, e.client_port)}</td>
            <td>{endpoint(e.server, e.server_port)}</td>
            <td>{e.sni}</td>
            <td>{e.alpn.join(", ")}</td>
            <td>{e.version}</td>
            <td>
              <code>{e.ja4}</code>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
