import { Link } from "react-router-dom";
import type { Session } from "../api";
import { Empty, ErrorState, Loading } from "../components/States";
import { useSessions } from "../queries";
import { formatCount } from "../format";

export function PhaseBadge({ session }: { session: Session }) {
  const kind = session.deleted_at ? "muted" : session.ready ? "ok" : session.phase === "Failed" ? "bad" : "warn";
  return <span className={`badge ${kind}`}>{session.deleted_at ? "Deleted" : (session.phase ?? "Unknown")}</span>;
}

export function Sessions() {
  const sessions = useSessions();
  if (sessions.isPending) return <Loading what="sessions" />;
  if (sessions.isError) return <ErrorState error={sessions.error} />;
  if (sessions.data.items.length === 0) {
    return (
      <Empty>
        <p>No capture sessions yet.</p>
        <p>
          Apply one with <code>kubectl apply -f examples/capture.yaml</code>, or run <code>hack/local/trawl-local up</code> for the local
          demo.
        </p>
      </Empty>
    );
  }
  return (
    <section aria-labelledby="sessions-title">
      <h1 id="sessions-title">Capture sessions</h1>
      <table className="grid">
        <thead>
          <tr>
            <th scope="col">Session</th>
            <th scope="col">Phase</th>
            <th scope="col">Ready</th>
            <th scope="col">Sniffers</th>
            <th scope="col">Parsers</th>
            <th scope="col">Backlog</th>
            <th scope="col">Captured</th>
            <th scope="col">Dropped</th>
            <th scope="col">Stored</th>
          </tr>
        </thead>
        <tbody>
          {sessions.data.items.map((s) => (
            <tr key={s.key}>
              <td>
                <Link to={`/sessions/${s.namespace}/${s.name}`}>{s.key}</Link>
              </td>
              <td>
                <PhaseBadge session={s} />
              </td>
              <td className="message">{s.message ?? (s.ready ? "Ready" : "")}</td>
              <td>{s.sniffers ? `${s.sniffers.ready}/${s.sniffers.desired}` : "–"}</td>
              <td>{s.parsers ? `${s.parsers.replicas}/${s.parsers.desiredReplicas}` : "–"}</td>
              <td>{s.backlog ?? "–"}</td>
              <td>{formatCount(s.packets.captured)}</td>
              <td className={s.packets.dropped > 0 ? "bad-text" : undefined}>{formatCount(s.packets.dropped)}</td>
              <td>{formatCount(s.packets.stored)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
