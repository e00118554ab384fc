import { Link, useParams } from "react-router-dom";
import { withToken } from "../api";
import { ErrorState, Loading } from "../components/States";
import { formatCount } from "../format";
import { useSession } from "../queries";
import { PhaseBadge } from "./Sessions";

export function SessionDetail() {
  const { namespace = "", name = "" } = useParams();
  const session = useSession(namespace, name);
  if (session.isPending) return <Loading what="the session" />;
  if (session.isError) return <ErrorState error={session.error} />;
  const s = session.data;
  const key = encodeURIComponent(s.key);
  const inFlight = s.packets.captured - s.packets.stored - s.packets.deduplicated - s.packets.dropped;
  return (
    <section aria-labelledby="session-title">
      <h1 id="session-title">
        {s.key} <PhaseBadge session={s} />
      </h1>
      <p className="message">{s.message}</p>
      <nav className="actions" aria-label="Session views">
        <Link to={`/?session=${key}`}>Dashboard</Link>
        <Link to={`/packets?session=${key}`}>Packets</Link>
        <Link to={`/flows?session=${key}`}>Flows</Link>
        <a href={withToken(`/api/v1/sessions/${s.namespace}/${s.name}/pcap`)} download={`${s.namespace}-${s.name}.pcap`}>
          Download pcap
        </a>
        <a
          href={withToken(`/api/v1/sessions/${s.namespace}/${s.name}/pcap?format=pcapng`)}
          download={`${s.namespace}-${s.name}.pcapng`}
          title="pcapng with name records: Wireshark shows pods, Services and DNS names"
        >
          Download pcapng with names
        </a>
      </nav>
      <div className="cards">
        <div className="card">
          <h2>Packets</h2>
          <dl>
            <dt>Captured</dt>
            <dd>{formatCount(s.packets.captured)}</dd>
            <dt>Stored</dt>
            <dd>{formatCount(s.packets.stored)}</dd>
            <dt title="Copies of a packet already captured on another interface of the node">Deduplicated</dt>
            <dd>{formatCount(s.packets.deduplicated)}</dd>
            <dt>Dropped</dt>
            <dd>{formatCount(s.packets.dropped)}</dd>
            {Object.entries(s.packets.dropped_by_reason).map(([reason, n]) => (
              <div key={reason} className="sub">
                <dt>… {reason.replace("_", " ")}</dt>
                <dd>{formatCount(n)}</dd>
              </div>
            ))}
            <dt>On the way</dt>
            <dd>{formatCount(Math.max(0, inFlight))}</dd>
          </dl>
        </div>
        <div className="card">
          <h2>Pipeline</h2>
          <dl>
            <dt>Sniffers ready</dt>
            <dd>{s.sniffers ? `${s.sniffers.ready} of ${s.sniffers.desired}` : "–"}</dd>
            <dt>Parser replicas</dt>
            <dd>{s.parsers ? `${s.parsers.replicas} (want ${s.parsers.desiredReplicas})` : "–"}</dd>
            <dt>Queue backlog</dt>
            <dd>{s.backlog ?? "–"} batches</dd>
            <dt>Started</dt>
            <dd>{s.start_time ?? "–"}</dd>
            <dt>Completed</dt>
            <dd>{s.completion_time ?? "–"}</dd>
          </dl>
        </div>
      </div>
      <h2>Conditions</h2>
      <table className="grid">
        <thead>
          <tr>
            <th scope="col">Type</th>
            <th scope="col">Status</th>
            <th scope="col">Reason</th>
            <th scope="col">Message</th>
            <th scope="col">Since</th>
          </tr>
        </thead>
        <tbody>
          {s.conditions.map((c) => (
            <tr key={c.type}>
              <td>{c.type}</td>
              <td>{c.status}</td>
              <td>{c.reason}</td>
              <td className="message">{c.message}</td>
              <td>{c.lastTransitionTime}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Spec</h2>
      <pre className="spec">{JSON.stringify(s.spec, null, 2)}</pre>
    </section>
  );
}
