import { Link, useSearchParams } from "react-router-dom";
import { useInfiniteQuery } from "@tanstack/react-query";
import { type Flow, getJson, type Page } from "../api";
import { FilterBar } from "../components/FilterBar";
import { Empty, ErrorState, Loading } from "../components/States";
import { apiQuery } from "../filters";
import { endpoint, formatBytes, formatCount, formatTime, namedEndpoint } from "../format";
import { useFilters } from "../useFilters";

const SORTS = [
  { key: "last_seen", label: "Last seen" },
  { key: "bytes", label: "Bytes" },
  { key: "packets", label: "Packets" },
] as const;

export function Flows() {
  const [filters, setFilters] = useFilters();
  const [search, setSearch] = useSearchParams();
  const sort = search.get("sort") ?? "last_seen";
  const flows = useInfiniteQuery({
    queryKey: ["flows", filters, sort],
    queryFn: ({ pageParam, signal }) =>
      getJson<Page<Flow>>(`/api/v1/flows?${apiQuery(filters, { sort, limit: 200, cursor: pageParam })}`, signal),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.next_cursor ?? undefined,
    refetchInterval: 10_000,
  });
  const setSort = (key: string) =>
    setSearch((current) => {
      const next = new URLSearchParams(current);
      next.set("sort", key);
      return next;
    });
  const rows = flows.data?.pages.flatMap((p) => p.items) ?? [];
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
                <td title={endpoint(f.dst, f.dst_port)}>{namedEndpoint(f.dst, f.dst_port, f.dst_endpoint)}</td>
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
      {flows.hasNextPage && (
        <button type="button" onClick={() => void flows.fetchNextPage()} disabled={flows.isFetchingNextPage}>
          {flows.isFetchingNextPage ? "Loading…" : "Load more flows"}
        </button>
      )}
    </section>
  );
}
