import { describe, expect, it } from "vitest";
import type { Packet } from "./api";
import { mergePackets } from "./live";

const packet = (id: number) => ({ id }) as Packet;

describe("merging live and paged packets", () => {
  it("keeps newest first without duplicates", () => {
    const rows = [packet(5), packet(4), packet(2)];
    const merged = mergePackets(rows, [packet(6), packet(4), packet(3)]);
    expect(merged.map((p) => p.id)).toEqual([6, 5, 4, 3, 2]);
  });

  it("returns the same array when nothing is new", () => {
    const rows = [packet(2), packet(1)];
    expect(mergePackets(rows, [packet(1)])).toBe(rows);
    expect(mergePackets(rows, [])).toBe(rows);
  });

  it("drops the oldest beyond the cap", () => {
    const rows = Array.from({ length: 10 }, (_, i) => packet(10 - i));
    const merged = mergePackets(rows, [packet(11), packet(12)], 10);
    expect(merged).toHaveLength(10);
    expect(merged[0]?.id).toBe(12);
    expect(merged[9]?.id).toBe(3);
  });

  it("keeps the newest at the cap of 100k rows", () => {
    const rows = Array.from({ length: 100_000 }, (_, i) => packet(100_000 - i));
    const merged = mergePackets(rows, [packet(100_001)]);
    expect(merged).toHaveLength(100_000);
    expect(merged[0]?.id).toBe(100_001);
  });
});
