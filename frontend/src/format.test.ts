import { describe, expect, it } from "vitest";
import { endpoint, endpointName, formatBytes, formatMillis, formatTcpFlags, formatTime, hexDump, namedEndpoint } from "./format";

describe("formatting", () => {
  it("sizes", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(200 * 1024 * 1024)).toBe("200 MiB");
  });

  it("TCP flags", () => {
    expect(formatTcpFlags(0x12)).toBe("SYN ACK");
    expect(formatTcpFlags(0x18)).toBe("ACK PSH");
    expect(formatTcpFlags(null)).toBe("");
  });

  it("times show the date only when not today", () => {
    const now = new Date("2026-11-27T12:00:00");
    expect(formatTime(new Date("2026-11-27T10:01:02.003").toISOString(), now)).toBe("10:01:02.003");
    expect(formatTime(new Date("2026-11-26T10:01:02.003").toISOString(), now)).toBe("2026-11-26 10:01:02.003");
  });

  it("hex dumps 16 bytes a line with printable ASCII", () => {
    const hex = Array.from({ length: 18 }, (_, i) => (0x41 + i).toString(16)).join("");
    const lines = hexDump(hex);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toEqual({
      offset: "0000",
      hex: "41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50",
      ascii: "ABCDEFGHIJKLMNOP",
    });
    expect(lines[1]).toEqual({ offset: "0010", hex: "51 52", ascii: "QR" });
    expect(hexDump("00ff")[0]?.ascii).toBe("..");
    expect(() => hexDump("zz")).toThrow(/not hex/);
  });

  it("endpoints bracket IPv6", () => {
    expect(endpoint("10.0.0.1", 53)).toBe("10.0.0.1:53");
    expect(endpoint("fd00::1", 443)).toBe("[fd00::1]:443");
    expect(endpoint(null, 80)).toBe("");
  });
});

describe("durations", () => {
  it("read as people read them", () => {
    expect(formatMillis(null)).toBe("");
    expect(formatMillis(0.85)).toBe("850 µs");
    expect(formatMillis(12.43)).toBe("12.4 ms");
    expect(formatMillis(250)).toBe("250 ms");
    expect(formatMillis(1200)).toBe("1.20 s");
  });
});

describe("endpoint names", () => {
  const pod = { kind: "pod", namespace: "shop", name: "checkout-7d9f-x2", workload_kind: "Deployment", workload: "checkout", node: "n1" };
  it("names a pod by its workload, a bare pod by itself, Services and nodes by kind", () => {
    expect(endpointName(pod)).toBe("shop/checkout");
    expect(endpointName({ ...pod, workload: null, workload_kind: null })).toBe("shop/checkout-7d9f-x2");
    expect(endpointName({ ...pod, kind: "service", name: "checkout", workload: null })).toBe("shop/service/checkout");
    expect(endpointName({ ...pod, kind: "node", namespace: null, name: "n1", workload: null })).toBe("node/n1");
    expect(endpointName({ kind: "dns", namespace: null, name: "api.example.org", workload_kind: null, workload: null, node: null })).toBe("api.example.org");
    expect(endpointName(null)).toBeNull();
  });
  it("shows the name with the port, or the address when the name is unknown", () => {
    expect(namedEndpoint("10.0.0.7", 443, pod)).toBe("shop/checkout:443");
    expect(namedEndpoint("10.0.0.7", 443, null)).toBe("10.0.0.7:443");
    expect(namedEndpoint("fd00::7", null, null)).toBe("fd00::7");
  });
});
