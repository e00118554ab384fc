import type { Endpoint } from "./api";

// Formatting of sizes, times, TCP flags and hex dumps for display.

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatCount(n: number): string {
  return new Intl.NumberFormat("en").format(n);
}

/** `HH:MM:SS.mmm` in local time, plus the date when it is not today. */
export function formatTime(iso: string, now: Date = new Date()): string {
  const t = new Date(iso);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  const time = `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${pad(t.getMilliseconds(), 3)}`;
  const sameDay = t.toDateString() === now.toDateString();
  return sameDay ? time : `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${time}`;
}

const TCP_FLAGS: [number, string][] = [
  [0x02, "SYN"],
  [0x10, "ACK"],
  [0x01, "FIN"],
  [0x04, "RST"],
  [0x08, "PSH"],
  [0x20, "URG"],
  [0x40, "ECE"],
  [0x80, "CWR"],
];

export function formatTcpFlags(flags?: number | null): string {
  if (flags === null || flags === undefined) return "";
  return TCP_FLAGS.filter(([bit]) => flags & bit)
    .map(([, name]) => name)
    .join(" ");
}

export interface HexLine {
  offset: string;
  hex: string;
  ascii: string;
}

/** A hex dump of 16 bytes per line, like Wireshark's bytes pane. */
export function hexDump(hex: string): HexLine[] {
  const bytes: number[] = [];
  for (let i = 0; i + 1 < hex.length; i += 2) {
    const byte = parseInt(hex.slice(i, i + 2), 16);
    if (Number.isNaN(byte)) throw new Error(`not hex at offset ${i / 2}`);
    bytes.push(byte);
  }
  const lines: HexLine[] = [];
  for (let offset = 0; offset < bytes.length; offset += 16) {
    const chunk = bytes.slice(offset, offset + 16);
    const hexPart = chunk.map((b) => b.toString(16).padStart(2, "0"));
    lines.push({
      offset: offset.toString(16).padStart(4, "0"),
      hex: [hexPart.slice(0, 8).join(" "), hexPart.slice(8).join(" ")].join("  ").trimEnd(),
      ascii: chunk.map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join(""),
    });
  }
  return lines;
}

// Optional fields of the API's types are absent or null alike (the OpenAPI document types an
// Option<T> field as `?: T | null`).
export function endpoint(address?: string | null, port?: number | null): string {
  if (!address) return "";
  if (port === null || port === undefined) return address;
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

/** A duration in milliseconds as people read it: `850 µs`, `12.4 ms`, `1.20 s`; empty when unknown. */
export function formatMillis(ms?: number | null): string {
  if (ms === null || ms === undefined) return "";
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 1000) return `${ms < 100 ? ms.toFixed(1) : Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** What an address was, as people name it: `shop/checkout` (its workload), `shop/checkout-7d9f-x2`
 * (a bare pod), `shop/service/checkout`, `node/kwok-node-0`, or the DNS name; null when unknown. */
export function endpointName(e: Endpoint | null | undefined): string | null {
  if (!e) return null;
  const qualified = (name: string) => (e.namespace ? `${e.namespace}/${name}` : name);
  if (e.workload) return qualified(e.workload);
  if (e.kind === "service") return qualified(`service/${e.name}`);
  if (e.kind === "node") return `node/${e.name}`;
  return qualified(e.name);
}

/** An end of a packet or flow: its name first (with the port) when known, else the address. */
export function namedEndpoint(address?: string | null, port?: number | null, e?: Endpoint | null): string {
  const name = endpointName(e);
  if (!name) return endpoint(address, port);
  return port === null ? name : `${name}:${port}`;
}
