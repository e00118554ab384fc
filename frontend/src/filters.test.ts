import { describe, expect, it } from "vitest";
import { apiQuery, filtersFromSearch, filtersToSearch, splitSession } from "./filters";

describe("filters in the URL", () => {
  it("reads known, non-blank filters only", () => {
    const search = new URLSearchParams("session=a/b&q=tcp%20and%20port%20443&port=&packet=7&junk=1");
    expect(filtersFromSearch(search)).toEqual({ session: "a/b", q: "tcp and port 443" });
  });

  it("writes filters and keeps other parameters", () => {
    const base = new URLSearchParams("packet=7&port=22");
    const search = filtersToSearch({ port: "443", host: " 10.0.0.5 " }, base);
    expect(search.get("packet")).toBe("7");
    expect(search.get("port")).toBe("443");
    expect(search.get("host")).toBe("10.0.0.5");
  });

  it("round-trips", () => {
    const filters = { session: "ns/web", since: "15m", q: "dns or tls" };
    expect(filtersFromSearch(filtersToSearch(filters))).toEqual(filters);
  });

  it("builds API queries with extras", () => {
    expect(apiQuery({ protocol: "dns" }, { limit: 200, cursor: undefined })).toBe("protocol=dns&limit=200");
  });

  it("splits session keys", () => {
    expect(splitSession("team-a/web")).toEqual({ namespace: "team-a", name: "web" });
    expect(splitSession("web")).toBeNull();
    expect(splitSession("a/b/c")).toBeNull();
  });
});
