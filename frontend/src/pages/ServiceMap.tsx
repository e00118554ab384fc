import { Link } from "react-router-dom";
import type { MapEdge, MapNode } from "../api";
import { FilterBar } from "../components/FilterBar";
import { Empty, ErrorState, Loading } from "../components/States";
import { filtersToSearch } from "../filters";
import { formatBytes, formatCount } from "../format";
import { useServiceMap } from "../queries";
import { useFilters } from "../useFilters";

// Who talks to whom, by workload (and Service, node, DNS name, address), as Hubble's service map:
// a drawing of the heaviest edges, and every edge in a table with its errors.

const DRAWN = 24;
const SIZE = 560;

export function ServiceMap() {
  const [filters, setFilters] = useFilters();
  const map = useServiceMap(filters);
  return (
    <section aria-labelledby="map-title">
      <h1 id="map-title" className="visually-hidden">
        Service map
      </h1>
      <FilterBar filters={filters} onApply={setFilters} />
      {map.isPending && <Loading what="the service map" />}
      {map.isError && <ErrorState error={map.error} />}
      {map.isSuccess && map.data.edges.length === 0 && (
        <Empty>
          <p>No flows match these filters.</p>
          <p>Widen the time range or clear a filter.</p>
        </Empty>
      )}
      {map.isSuccess && map.data.edges.length > 0 && (
        <>
          <Drawing nodes={map.data.nodes} edges={map.data.edges.slice(0, DRAWN)} />
          <table className="grid" aria-label="Edges">
            <thead>
              <tr>
                <th scope="col">From</th>
                <th scope="col">To</th>
                <th scope="col">Protocols</th>
                <th scope="col">Flows</th>
                <th scope="col">Packets</th>
                <th scope="col">Bytes</th>
                <th scope="col">HTTP 5xx</th>
                <th scope="col">DNS errors</th>
              </tr>
            </thead>
            <tbody>
              {map.data.edges.map((e) => (
                <tr key={`${e.from} ${e.to}`}>
                  <td>{e.from}</td>
                  <td>{e.to}</td>
                  <td>{e.l7.join(", ")}</td>
                  <td>{formatCount(e.flows)}</td>
                  <td>
                    <Link to={`/flows?${filtersToSearch({ ...filters, q: edgeFilter(e, map.data.nodes) ?? filters.q })}`}>
                      {formatCount(e.packets)}
                    </Link>
                  </td>
                  <td>{formatBytes(e.bytes)}</td>
                  <td className={e.http_errors > 0 ? "bad" : undefined}>{e.http_errors}</td>
                  <td className={e.dns_errors > 0 ? "bad" : undefined}>{e.dns_errors}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}

/** A `q` that selects an edge's flows when both ends are workloads, pods or addresses. */
export function edgeFilter(edge: MapEdge, nodes: MapNode[]): string | undefined {
  const side = (id: string, which: "src" | "dst") => {
    const node = nodes.find((n) => n.id === id);
    if (!node) return undefined;
    if (node.kind === "workload") return `${which} workload ${id}`;
    if (node.kind === "pod") return `${which} pod ${id}`;
    if (node.kind === "address") return `${which} host ${id}`;
    return undefined;
  };
  const from = side(edge.from, "src");
  const to = side(edge.to, "dst");
  return from && to ? `${from} and ${to}` : undefined;
}

/** The nodes on a circle, edges as lines as thick as their share of the bytes. */
function Drawing({ nodes, edges }: { nodes: MapNode[]; edges: MapEdge[] }) {
  const shown = nodes.filter((n) => edges.some((e) => e.from === n.id || e.to === n.id));
  const radius = SIZE / 2 - 110;
  const at = new Map(
    shown.map((n, i) => {
      const angle = (2 * Math.PI * i) / shown.length - Math.PI / 2;
      return [n.id, { x: SIZE / 2 + radius * Math.cos(angle), y: SIZE / 2 + radius * Math.sin(angle) }];
    }),
  );
  const heaviest = Math.max(...edges.map((e) => e.bytes), 1);
  return (
    <svg className="service-map" viewBox={`0 0 ${SIZE} ${SIZE}`} role="img" aria-label={`Service map of ${shown.length} endpoints`}>
      {edges.map((e) => {
        const a = at.get(e.from);
        const b = at.get(e.to);
        if (!a || !b) return null;
        const errors = e.http_errors + e.dns_errors > 0;
        return (
          <line
            key={`${e.from} ${e.to}`}
            x1={a.x}
            y1={a.y}
            x2={b.x}
            y2={b.y}
            className={errors ? "edge bad" : "edge"}
            strokeWidth={1 + 5 * (e.bytes / heaviest)}
          >
            <title>{`${e.from} → ${e.to}: ${formatCount(e.packets)} packets, ${formatBytes(e.bytes)}`}</title>
          </line>
        );
      })}
      {shown.map((n) => {
        const p = at.get(n.id)!;
        return (
          <g key={n.id} className={`map-node ${n.kind}`}>
            <circle cx={p.x} cy={p.y} r={6} />
            <text x={p.x} y={p.y - 10} textAnchor="middle">
              {n.id}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
