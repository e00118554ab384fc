import { useQuery } from "@tanstack/react-query";
import { getJson, type PacketDetail } from "../api";
import { ErrorState, Loading } from "../components/States";
import { endpoint, formatTime, hexDump } from "../format";
import { layerTree, type TreeNode } from "../layers";

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
  const detail = useQuery({
    queryKey: ["packet", id],
    queryFn: ({ signal }) => getJson<PacketDetail>(`/api/v1/packets/${id}`, signal),
  });
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
