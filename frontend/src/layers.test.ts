import { describe, expect, it } from "vitest";
import { layerTree } from "./layers";

describe("layer tree", () => {
  it("titles each layer and nests its fields", () => {
    const tree = layerTree([
      { layer: "ethernet", src: "02:00:00:00:00:02", dst: "02:00:00:00:00:01", ethertype: "IPv4 (0x0800)" },
      { layer: "application", protocol: "dns", id: 7, response: false, queries: ["a.example.org"], answers: [] },
      { layer: "tls", sni: null, extra: { alpn: ["h2", "http/1.1"] } },
    ]);
    expect(tree.map((n) => n.label)).toEqual(["ETHERNET", "DNS", "TLS"]);
    expect(tree[0]?.children.find((c) => c.label === "ethertype")?.value).toBe("IPv4 (0x0800)");
    const dns = tree[1]!;
    expect(dns.children.find((c) => c.label === "queries")?.value).toBe("a.example.org");
    expect(dns.children.find((c) => c.label === "answers")?.value).toBe("(none)");
    expect(dns.children.find((c) => c.label === "response")?.value).toBe("false");
    expect(dns.children.map((c) => c.label)).not.toContain("protocol");
    const tls = tree[2]!;
    expect(tls.children.map((c) => c.label)).toEqual(["extra"]);
    expect(tls.children[0]?.children[0]?.value).toBe("h2, http/1.1");
  });
});
