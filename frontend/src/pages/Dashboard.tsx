import { Area, AreaChart, Bar, BarChart, CartesianGrid, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import type { Count } from "../api";
import { FilterBar } from "../components/FilterBar";
import { Empty, ErrorState, Loading } from "../components/States";
import { formatBytes, formatCount } from "../format";
import { useStats } from "../queries";
import { useFilters } from "../useFilters";

function TopList({ title, counts }: { title: string; counts: Count[] }) {
  return (
    <div className="card">
      <h2>{title}</h2>
      {counts.length === 0 ? (
        <p className="hint">None in this range.</p>
      ) : (
        <table className="grid compact">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Packets</th>
              <th scope="col">Bytes</th>
            </tr>
          </thead>
          <tbody>
            {counts.map((c) => (
              <tr key={c.name}>
                <td>{c.name}</td>
                <td>{formatCount(c.packets)}</td>
                <td>{formatBytes(c.bytes)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

export function Dashboard() {
  const [filters, setFilters] = useFilters();
  const range = { ...filters, since: filters.since ?? "1h" };
  const stats = useStats(range);
  const timeline =
    stats.data?.timeline.map((b) => ({
      time: new Date(b.start).toLocaleTimeString(),
      packets: b.packets,
      bytes: b.bytes,
    })) ?? [];
  return (
    <section aria-labelledby="dashboard-title">
      <h1 id="dashboard-title" className="visually-hidden">
        Dashboard
      </h1>
      <FilterBar filters={range} onApply={setFilters} fields={["since", "until", "host", "port", "protocol", "q"]} />
      {stats.isPending && <Loading what="statistics" />}
      {stats.isError && <ErrorState error={stats.error} />}
      {stats.data && stats.data.packets === 0 && (
        <Empty>
          <p>No packets in this range.</p>
          <p>Pick a session that is capturing, or widen the range (Since: 24h).</p>
        </Empty>
      )}
      {stats.data && stats.data.packets > 0 && (
        <>
          <div className="cards">
            <div className="card kpi">
              <h2>Packets</h2>
              <p>{formatCount(stats.data.packets)}</p>
            </div>
            <div className="card kpi">
              <h2>Bytes</h2>
              <p>{formatBytes(stats.data.bytes)}</p>
            </div>
            <div className="card kpi">
              <h2>Bucket</h2>
              <p>{stats.data.bucket_seconds} s</p>
            </div>
          </div>
          <div className="cards">
            <figure className="card chart" aria-label="Packets over time">
              <h2>Packets over time</h2>
              <ResponsiveContainer width="100%" height={200}>
                <AreaChart data={timeline}>
                  <CartesianGrid strokeDasharray="3 3" stroke="var(--grid)" />
                  <XAxis dataKey="time" stroke="var(--muted)" fontSize={11} />
                  <YAxis stroke="var(--muted)" fontSize={11} />
                  <Tooltip />
                  <Area type="monotone" dataKey="packets" stroke="var(--accent)" fill="var(--accent-soft)" isAnimationActive={false} />
                </AreaChart>
              </ResponsiveContainer>
            </figure>
            <figure className="card chart" aria-label="Bytes over time">
              <h2>Bytes over time</h2>
              <ResponsiveContainer width="100%" height={200}>
                <AreaChart data={timeline}>
                  <CartesianGrid strokeDasharray="3 3" stroke="var(--grid)" />
                  <XAxis dataKey="time" stroke="var(--muted)" fontSize={11} />
                  <YAxis stroke="var(--muted)" fontSize={11} tickFormatter={(v: number) => formatBytes(v)} width={70} />
                  <Tooltip formatter={(v) => formatBytes(Number(v))} />
                  <Area type="monotone" dataKey="bytes" stroke="var(--accent-2)" fill="var(--accent-2-soft)" isAnimationActive={false} />
                </AreaChart>
              </ResponsiveContainer>
            </figure>
            <figure className="card chart" aria-label="Protocols">
              <h2>Protocols</h2>
              <ResponsiveContainer width="100%" height={200}>
                <BarChart data={stats.data.protocols} layout="vertical">
                  <XAxis type="number" stroke="var(--muted)" fontSize={11} />
                  <YAxis type="category" dataKey="name" stroke="var(--muted)" fontSize={11} width={80} />
                  <Tooltip />
                  <Bar dataKey="packets" fill="var(--accent)" isAnimationActive={false} />
                </BarChart>
              </ResponsiveContainer>
            </figure>
          </div>
          <div className="cards">
            <TopList title="Top workloads (by bytes sent)" counts={stats.data.top_workloads} />
            <TopList title="Top talkers (by bytes sent)" counts={stats.data.top_talkers} />
            <TopList title="DNS names" counts={stats.data.top_dns_names} />
            <TopList title="HTTP hosts" counts={stats.data.top_http_hosts} />
            <TopList title="TLS server names (SNI)" counts={stats.data.top_tls_server_names} />
          </div>
        </>
      )}
    </section>
  );
}
