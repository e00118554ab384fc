import { Link, useSearchParams } from "react-router-dom";
import { FilterBar } from "../components/FilterBar";
import { LoadMore } from "../components/LoadMore";
import { Empty, ErrorState, Loading } from "../components/States";
import { apiQuery } from "../filters";
import { endpoint, formatBytes, formatCount, formatTime, namedEndpoint } from "../format";
import { type FlowSort, useFlows } from "../queries";
import { useFilters } from "../useFilters";

const SORTS: { key: FlowSort; label: string }[] = [
  { key: "last_seen", label: "Last seen" },
  { key: "bytes", label: "Bytes" },
  { key: "packets", label: "Packets" },
];

export function Flows() {
  const [filters, setFilters] = useFilters();
  const [search, setSearch] = useSearchParams();
  const sort = SORTS.find((s) => s.key === search.get("sort"))?.key ?? "last_seen";
  const flows = useFlows(filters, sort);
  const setSort = (key: FlowSort) =>
    setSearch((current) => {
      const next = new URLSearchParams(current);
      next.set("sort", key);
      return next;
    });
  const rows = flows.rows;
  return (
    <section aria-labelledby="flows-title">
      <h1 id="flows-title" className="visually-hidden">
        Flows
      </h1>
      <FilterBar filters={filters} onApply={setFilters} />
      {flows.isPending && <Loading what="flows" />}
      {flows.isError && <ErrorState error={flows.error} />}
      {flows.isSuccess && rows.length === 0 && (
        <Empty>
          <p>No flows match these filters.</p>
          <p>Widen the time range or clear a filter.</p>
        </Empty>
      )}
      {rows.length > 0 && (
        <table className="grid">
          <thead>
            <tr>
              <th scope="col">Protocol</th>
              <th scope="col">Source</th>
              <th scope="col">Destination</th>
              <th scope="col">Name</th>
              {SORTS.map((s) => (
                <th key={s.key} scope="col" aria-sort={sort === s.key ? "descending" : "none"}>
                  <button type="button" className="link" onClick={() => setSort(s.key)}>
                    {s.label}
                    {sort === s.key ? " ▼" : ""}
                  </button>
                </th>
              ))}
              <th scope="col">First seen</th>
              <th scope="col">Packets</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((f) => (
              <tr key={`${f.session}/${f.flow_key}`}>
                <td>{f.l7 ?? f.transport}</td>
                <td title={endpoint(f.src, f.src_port)}>{namedEndpoint(f.src, f.src_port, f.src_endpoint)}</td>
                <td title={endpoint(f.dst, f.dst_port)}>
                  {namedEndpoint(f.dst, f.dst_port, f.dst_endpoint)}
                  {f.dst_service && (
                    <small className="via-service"> via Service {f.dst_service.namespace}/{f.dst_service.name}</small>
                  )}
                </td>
                <td>{f.l7_name}</td>
                <td>{formatTime(f.last_seen)}</td>
                <td>
                  {formatBytes(f.bytes)} <small>({formatBytes(f.bytes_sent)} → / ← {formatBytes(f.bytes_received)})</small>
                </td>
                <td>{formatCount(f.packets)}</td>
                <td>{formatTime(f.first_seen)}</td>
                <td>
                  <Link
                    to={`/packets?${apiQuery({ session: f.session, q: f.packets_filter, since: filters.since, until: filters.until })}`}
                    aria-label={`Packets of the flow ${endpoint(f.src, f.src_port)} to ${endpoint(f.dst, f.dst_port)}`}
                  >
                    Packets
                  </Link>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <LoadMore list={flows} what="flows" />
    </section>
  );
}
