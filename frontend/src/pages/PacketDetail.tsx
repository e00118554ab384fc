import type { Endpoint } from "../api";
import { ErrorState, Loading } from "../components/States";
import { endpoint, endpointName, formatTime, hexDump } from "../format";
import { layerTree, type TreeNode } from "../layers";
import { usePacketDetail } from "../queries";

function Tree({ nodes }: { nodes: TreeNode[] }) {
  return (
    <ul className="tree">
      {nodes.map((node, i) =>
        node.children.length > 0 ? (
          <li key={`${node.label}-${i}`}>
            <details open>
              <summary>{node.label}</summary>
              <Tree nodes={node.children} />
            </details>
          </li>
        ) : (
          <li key={`${node.label}-${i}`}>
            <span className="field">{node.label}:</span> {node.value}
          </li>
        ),
      )}
    </ul>
  );
}

export function PacketDetailPane({ id, onClose }: { id: number; onClose: () => void }) {
  const detail = usePacketDetail(id);
  return (
    <aside className="detail" aria-label={`Packet ${id}`}>
      <div className="toolbar">
        <h2>Packet {id}</h2>
        <button type="button" onClick={onClose} aria-label="Close packet details">
          ✕
        </button>
      </div>
      {detail.isPending && <Loading what="the packet" />}
      {detail.isError && <ErrorState error={detail.error} />}
      {detail.data && (
        <>
          <p>
            {formatTime(detail.data.ts)} · {endpoint(detail.data.src, detail.data.src_port)} →{" "}
            {endpoint(detail.data.dst, detail.data.dst_port)} · {detail.data.original_len} bytes on the wire, {detail.data.captured_len}{" "}
            captured on {detail.data.node}/{detail.data.interface}
          </p>
          {detail.data.tunnel && (
            <p>
              Through a {detail.data.tunnel.toUpperCase()} tunnel
              {detail.data.tunnel_id != null ? ` (id ${detail.data.tunnel_id})` : ""} from {detail.data.outer_src} to{" "}
              {detail.data.outer_dst}: the addresses and layers shown are what it carried.
            </p>
          )}
          <dl className="endpoints">
            <EndpointRow label="Source" address={detail.data.src} endpoint={detail.data.src_endpoint} />
            <EndpointRow label="Destination" address={detail.data.dst} endpoint={detail.data.dst_endpoint} />
          </dl>
          <h3>Layers</h3>
          <Tree nodes={layerTree(detail.data.layers)} />
          <h3>Bytes {detail.data.payload_kept ? "(whole frame)" : "(headers only: this session does not keep payload)"}</h3>
          <pre className="hex" aria-label="Hex dump">
            {hexDump(detail.data.data_hex)
              .map((line) => `${line.offset}  ${line.hex.padEnd(49)}  ${line.ascii}`)
              .join("\n")}
          </pre>
        </>
      )}
    </aside>
  );
}

/** Who an end was at the packet's time, with what says so. */
function EndpointRow({ label, address, endpoint: e }: { label: string; address?: string | null; endpoint?: Endpoint | null }) {
  if (!address) return null;
  const name = endpointName(e);
  let detail = "not known to the cluster's history or a captured DNS answer";
  if (e?.kind === "dns") detail = "named by a DNS answer captured in this session";
  else if (e) {
    const parts = [e.kind === "pod" ? `pod ${e.name}` : e.kind];
    if (e.workload_kind) parts.push(`of ${e.workload_kind} ${e.workload}`);
    if (e.node) parts.push(`on ${e.node}`);
    detail = parts.join(" ");
  }
  return (
    <>
      <dt>{label}</dt>
      <dd>
        {name ? (
          <>
            <strong>{name}</strong> ({address}; {detail})
          </>
        ) : (
          <>
            {address} ({detail})
          </>
        )}
      </dd>
    </>
  );
}
