import { useCallback, useEffect, useRef } from "react";
import { useSearchParams } from "react-router-dom";
import { useVirtualizer } from "@tanstack/react-virtual";
import { withToken } from "../api";
import { FilterBar } from "../components/FilterBar";
import { Empty, ErrorState } from "../components/States";
import { apiQuery, type Filters, splitSession } from "../filters";
import { endpoint, formatTcpFlags, formatTime, namedEndpoint } from "../format";
import { MAX_ROWS } from "../live";
import { usePackets } from "../queries";
import { useFilters } from "../useFilters";
import { PacketDetailPane } from "./PacketDetail";

const ROW_HEIGHT = 28;

export function Packets() {
  const [filters, setFilters] = useFilters();
  const [search, setSearch] = useSearchParams();
  const selected = Number(search.get("packet")) || null;
  const select = useCallback(
    (id: number | null) =>
      setSearch((current) => {
        const next = new URLSearchParams(current);
        if (id === null) next.delete("packet");
        else next.set("packet", String(id));
        return next;
      }),
    [setSearch],
  );
  const session = filters.session ? splitSession(filters.session) : null;
  const { session: _omit, ...exportFilters } = filters;
  void _omit;
  return (
    <section aria-labelledby="packets-title" className="packets-page">
      <h1 id="packets-title" className="visually-hidden">
        Packets
      </h1>
      <FilterBar filters={filters} onApply={setFilters} fields={["since", "until", "namespace", "workload", "host", "src", "dst", "port", "protocol", "q"]} />
      <div className="toolbar">
        {session ? (
          <a
            className="button"
            href={withToken(`/api/v1/sessions/${session.namespace}/${session.name}/pcap?${apiQuery(exportFilters)}`)}
            download={`${session.namespace}-${session.name}.pcap`}
          >
            Download pcap of this filter
          </a>
        ) : (
          <span className="hint">Pick a session to stream live packets and download a pcap.</span>
        )}
      </div>
      <div className="split">
        <PacketList key={apiQuery(filters)} filters={filters} selected={selected} onSelect={select} />
        {selected !== null && <PacketDetailPane id={selected} onClose={() => select(null)} />}
      </div>
    </section>
  );
}

function PacketList({
  filters,
  selected,
  onSelect,
}: {
  filters: Filters;
  selected: number | null;
  onSelect: (id: number) => void;
}) {
  const { history, rows, live, waiting, pause, resume } = usePackets(filters);
  const loading = history.isFetching;
  const older = history.hasNextPage;
  const loadOlder = history.fetchNextPage;

  const scroller = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 20,
  });
  const items = virtualizer.getVirtualItems();
  const last = items[items.length - 1];
  // Scrolled to the end of what is loaded: page further back into history, up to the most rows
  // the view keeps.
  useEffect(() => {
    if (last && last.index >= rows.length - 1 && older && !loading && rows.length < MAX_ROWS) void loadOlder();
  }, [last, rows.length, older, loading, loadOlder]);

  const move = (delta: number) => {
    const index = rows.findIndex((p) => p.id === selected);
    const next = rows[Math.min(rows.length - 1, Math.max(0, index + delta))];
    if (next) {
      onSelect(next.id);
      virtualizer.scrollToIndex(rows.indexOf(next));
    }
  };

  if (history.isError && rows.length === 0) return <ErrorState error={history.error} />;
  return (
    <div className="packet-list">
      <div className="toolbar">
        {filters.session &&
          (live ? (
            <button type="button" onClick={pause} aria-pressed="true">
              ❚❚ Pause live
            </button>
          ) : (
            <button type="button" onClick={resume} aria-pressed="false">
              ▶ Resume live{waiting ? ` (${waiting} new)` : ""}
            </button>
          ))}
        <span role="status" aria-live="polite" className="hint">
          {rows.length} packets{older ? ", scroll down for older" : ""}
          {loading ? " · loading…" : ""}
        </span>
        {older && (
          <button type="button" onClick={() => void loadOlder()} disabled={loading}>
            Load older
          </button>
        )}
      </div>
      {rows.length === 0 && !loading ? (
        <Empty>
          <p>No packets match these filters.</p>
          <p>Widen the time range, clear a filter, or check that the session is capturing.</p>
        </Empty>
      ) : (
        <div className="table" role="grid" aria-rowcount={rows.length} aria-label="Packets, newest first">
          <div className="row head" role="row">
            {["Time", "Source", "Destination", "Protocol", "Length", "Info"].map((h) => (
              <span key={h} role="columnheader">
                {h}
              </span>
            ))}
          </div>
          <div
            ref={scroller}
            className="rows"
            tabIndex={0}
            onKeyDown={(e) => {
              if (e.key === "ArrowDown") {
                e.preventDefault();
                move(1);
              } else if (e.key === "ArrowUp") {
                e.preventDefault();
                move(-1);
              }
            }}
          >
            <div style={{ height: virtualizer.getTotalSize(), position: "relative" }}>
              {items.map((item) => {
                const p = rows[item.index]!;
                return (
                  <div
                    key={p.id}
                    role="row"
                    aria-rowindex={item.index + 1}
                    aria-selected={p.id === selected}
                    className={`row${p.id === selected ? " selected" : ""}${p.malformed ? " malformed" : ""}`}
                    style={{ transform: `translateY(${item.start}px)`, height: ROW_HEIGHT }}
                    onClick={() => onSelect(p.id)}
                  >
                    <span role="gridcell">{formatTime(p.ts)}</span>
                    <span role="gridcell" title={endpoint(p.src, p.src_port)}>
                      {namedEndpoint(p.src, p.src_port, p.src_endpoint)}
                    </span>
                    <span role="gridcell" title={endpoint(p.dst, p.dst_port)}>
                      {namedEndpoint(p.dst, p.dst_port, p.dst_endpoint)}
                    </span>
                    <span role="gridcell">{p.l7 ?? p.transport ?? "?"}</span>
                    <span role="gridcell">{p.original_len}</span>
                    <span role="gridcell">
                      {p.info || p.l7_name || formatTcpFlags(p.tcp_flags)}
                      {p.malformed ? ` [${p.malformed}]` : ""}
                    </span>
                  </div>
                );
              })}
            </div>
          </div>
        </div>
      )}
    </div>
  );
}
