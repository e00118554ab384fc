// Merging packets from the live stream and from pages of history into one list, newest first.

import type { Packet } from "./api";

/** Most rows the packets view keeps; the oldest fall off beyond it. */
export const MAX_ROWS = 100_000;

/**
 * `incoming` merged into `rows` (both newest first by id): no id twice, newest first, at most
 * `max` rows. Returns `rows` itself when nothing new came, so React skips the render.
 */
export function mergePackets(rows: Packet[], incoming: Packet[], max = MAX_ROWS): Packet[] {
  if (incoming.length === 0) return rows;
  const seen = new Set(rows.map((p) => p.id));
  const fresh = incoming.filter((p) => !seen.has(p.id));
  if (fresh.length === 0) return rows;
  const merged = rows.concat(fresh);
  merged.sort((a, b) => b.id - a.id);
  return merged.length > max ? merged.slice(0, max) : merged;
}
