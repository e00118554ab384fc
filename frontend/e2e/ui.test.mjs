// End-to-end tests of the web UI in headless Chromium (Debian's, driven by playwright-core)
// against a running trawl-api whose data came through the real sniffer -> parser path:
// the local run (`hack/local/trawl-local up`) capturing its demo traffic. hack/local/smoke.sh starts it and runs this.
//
// Run: TRAWL_UI_URL=http://127.0.0.1:8080 TRAWL_SESSION=local/demo node --test e2e/ui.test.mjs
// Screenshots of each page go to e2e/artifacts/.
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

const base = process.env.TRAWL_UI_URL ?? "http://127.0.0.1:8080";
const session = process.env.TRAWL_SESSION ?? "local/demo";
const artifacts = new URL("./artifacts/", import.meta.url).pathname;
mkdirSync(artifacts, { recursive: true });

let browser;
let context;
let page;
const foreign = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  context = await browser.newContext({ viewport: { width: 1400, height: 900 }, acceptDownloads: true });
  page = await context.newPage();
  // The UI may talk to its own origin only.
  const origin = new URL(base).origin;
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(origin) && !url.startsWith("data:") && !url.startsWith("blob:")) foreign.push(url);
  });
});

after(async () => {
  await browser?.close();
});

const shot = (name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: false });
const q = encodeURIComponent(session);

test("the dashboard shows traffic over time, protocols and top names", async () => {
  await page.goto(`${base}/?session=${q}&since=15m`);
  await page.getByRole("heading", { name: "Packets over time" }).waitFor();
  await page.getByRole("heading", { name: "DNS names" }).waitFor();
  // The demo's DNS names and TLS server name are listed.
  await page.getByRole("cell", { name: /\.demo\.trawl$/ }).first().waitFor();
  await page.getByRole("cell", { name: "secure.demo.trawl" }).waitFor();
  assert.ok(await page.locator(".recharts-surface").count() >= 3, "three charts");
  await shot("dashboard");
});

test("sessions list the session with its counts, and a detail view", async () => {
  await page.goto(`${base}/sessions`);
  const link = page.getByRole("link", { name: session });
  await link.waitFor();
  const row = page.getByRole("row").filter({ has: link });
  assert.match(await row.innerText(), /Capturing/);
  await shot("sessions");
  await link.click();
  await page.getByRole("heading", { name: "Conditions" }).waitFor();
  await page.getByText("Captured").first().waitFor();
  await shot("session");
});

test("packets filter through the URL, page into history and open as a layer tree with hex", async () => {
  await page.goto(`${base}/packets?session=${q}`);
  await page.locator(".rows [role=row]").first().waitFor();
  await page.getByLabel("Protocol", { exact: true }).fill("dns");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForFunction(() => globalThis.location.search.includes("protocol=dns"));
  await page.locator(".rows [role=row]").first().waitFor();
  const protocols = await page.locator(".rows [role=row] [role=gridcell]:nth-child(4)").allInnerTexts();
  assert.ok(protocols.length > 0 && protocols.every((p) => p === "dns"), `only DNS rows: ${protocols}`);
  const infos = await page.locator(".rows [role=row] [role=gridcell]:nth-child(6)").allInnerTexts();
  assert.ok(
    infos.every((i) => /^Standard query (response )?0x[0-9a-f]{4} A \S+\.demo\.trawl/.test(i)),
    `Info as Wireshark writes it: ${infos.slice(0, 3)}`,
  );

  // A shared link gives the same view.
  const shared = await context.newPage();
  await shared.goto(page.url());
  await shared.locator(".rows [role=row]").first().waitFor();
  assert.equal(await shared.getByLabel("Protocol", { exact: true }).inputValue(), "dns");
  await shared.close();

  await page.locator(".rows [role=row]").first().click();
  await page.getByRole("heading", { name: /^Packet \d+$/ }).waitFor();
  await page.getByText("DNS", { exact: true }).waitFor();
  const hex = await page.getByLabel("Hex dump").innerText();
  assert.match(hex, /^0000 {2}[0-9a-f]{2} /, "a hex dump");
  // The whole dump, ASCII column included, fits its pane on a 1280-pixel screen.
  await page.setViewportSize({ width: 1280, height: 800 });
  const fits = await page.getByLabel("Hex dump").evaluate((pre) => pre.scrollWidth <= pre.clientWidth);
  assert.ok(fits, "the hex dump fits its pane at 1280 px");
  await page.getByText("IPv4 (0x0800)").first().waitFor({ state: "attached" });
  await page.setViewportSize({ width: 1400, height: 900 });
  await page.keyboard.press("Escape");
  await shot("packets");
});

test("new packets arrive live; paused, they wait and are counted, and resume adds them", async () => {
  await page.goto(`${base}/packets?session=${q}`);
  await page.locator(".rows [role=row]").first().waitFor();
  const status = page.locator(".packet-list [role=status]");
  const shown = async () => Number((await status.innerText()).match(/^(\d+) packets/)?.[1] ?? NaN);
  const deadline = { timeout: 60_000 };
  // The demo keeps talking: rows come from the stream, not from a reload.
  const before = await shown();
  await page.waitForFunction((n) => Number(globalThis.document.querySelector(".packet-list [role=status]")?.textContent?.match(/^(\d+)/)?.[1]) > n, before, deadline);
  await page.getByRole("button", { name: "❚❚ Pause live" }).click();
  const paused = await shown();
  await page.getByRole("button", { name: /^▶ Resume live \(\d+ new\)$/ }).waitFor(deadline);
  assert.equal(await shown(), paused, "paused: the list holds still");
  await page.getByRole("button", { name: /^▶ Resume live/ }).click();
  await page.waitForFunction((n) => Number(globalThis.document.querySelector(".packet-list [role=status]")?.textContent?.match(/^(\d+)/)?.[1]) > n, paused, deadline);
});

test("the pcap download of the current filter is a pcap file", async () => {
  await page.goto(`${base}/packets?session=${q}&protocol=dns`);
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "Download pcap of this filter" }).click(),
  ]);
  const file = join(tmpdir(), `trawl-e2e-${process.pid}.pcap`);
  await download.saveAs(file);
  const bytes = readFileSync(file);
  assert.ok(bytes.length > 24, "more than a header");
  assert.equal(bytes.readUInt32LE(0), 0xa1b2c3d4, "pcap magic");
  const names = execFileSync("tshark", ["-r", file, "-T", "fields", "-e", "dns.qry.name"]).toString().trim().split("\n");
  assert.ok(names.length > 0 && names.every((n) => n.endsWith(".demo.trawl")), `DNS names: ${names.slice(0, 5)}`);
});

test("flows sort and link to their packets", async () => {
  await page.goto(`${base}/flows?session=${q}`);
  await page.getByRole("button", { name: /^Bytes/ }).click();
  await page.waitForFunction(() => globalThis.location.search.includes("sort=bytes"));
  const first = page.getByRole("link", { name: /^Packets of the flow / }).first();
  await first.waitFor();
  await shot("flows");
  await first.click();
  await page.waitForFunction(() => globalThis.location.pathname === "/packets" && globalThis.location.search.includes("q="));
  await page.locator(".rows [role=row]").first().waitFor();
});

test("the service map names the demo's server by the DNS answers its client received", async () => {
  await page.goto(`${base}/service-map?session=${q}&since=15m`);
  const table = page.getByRole("table", { name: "Edges" });
  // Every demo name resolves to 10.203.0.2: the server is shown by the latest name asked for.
  await table.locator("tbody tr", { hasText: ".demo.trawl" }).first().waitFor();
  assert.ok((await page.locator("svg.service-map line").count()) >= 1, "edges are drawn");
  await shot("service-map");
});

test("events list DNS transactions, HTTP exchanges and TLS hellos, a tab each", async () => {
  await page.goto(`${base}/events?session=${q}`);
  const panel = page.getByRole("tabpanel");
  const dnsRow = panel.locator("tbody tr", { hasText: "NOERROR" }).first();
  await dnsRow.waitFor();
  assert.match(await dnsRow.innerText(), /\.demo\.trawl\s+A\s+NOERROR\s+A 10\.203\.0\.2/);
  await shot("events");
  await page.getByRole("tab", { name: "HTTP" }).click();
  const httpRow = panel.locator("tbody tr", { hasText: "/demo?round=" }).first();
  await httpRow.waitFor();
  assert.match(await httpRow.innerText(), /GET\s+\S+\s+\/demo\?round=\d+\s+200/);
  await page.getByRole("tab", { name: "TLS" }).click();
  const tlsRow = panel.locator("tbody tr", { hasText: "secure.demo.trawl" }).first();
  await tlsRow.waitFor();
  assert.match(await tlsRow.innerText(), /t1[23][di]\d{4}/, "a JA4 fingerprint");
  await page.waitForFunction(() => globalThis.location.search.includes("tab=tls"));
});

test("a dark theme", async () => {
  await page.goto(`${base}/?session=${q}&since=15m`);
  await page.getByRole("button", { name: "Switch to dark theme" }).click();
  assert.equal(await page.evaluate(() => globalThis.document.documentElement.dataset.theme), "dark");
  await page.getByRole("heading", { name: "Packets over time" }).waitFor();
  await shot("dashboard-dark");
  await page.getByRole("button", { name: "Switch to light theme" }).click();
});

test("a token is asked for when the API requires one", async () => {
  const binary = process.env.TRAWL_API_BIN;
  const databaseUrl = process.env.TRAWL_DATABASE_URL;
  if (!binary || !databaseUrl) {
    assert.fail("set TRAWL_API_BIN and TRAWL_DATABASE_URL to run a second API with tokens");
  }
  const tokens = join(tmpdir(), `trawl-e2e-tokens-${process.pid}.yaml`);
  writeFileSync(tokens, "tokens:\n  - name: e2e\n    token: e2e-token-0123456789abcdef\n    scopes: [read, pcap]\n");
  const port = 18000 + (process.pid % 1000);
  const api = spawn(binary, ["--database-url", databaseUrl, "--listen", `127.0.0.1:${port}`, "--tokens-file", tokens,
    "--static-dir", new URL("../dist", import.meta.url).pathname], { stdio: "ignore" });
  try {
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 100; i++) {
      try {
        if ((await fetch(`${url}/readyz`)).ok) break;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const tab = await context.newPage();
    await tab.goto(`${url}/sessions`);
    const dialog = tab.getByRole("dialog", { name: "This Trawl API needs a token" });
    await dialog.waitFor();
    await tab.getByLabel("Token", { exact: true }).fill("e2e-token-0123456789abcdef");
    await tab.getByRole("button", { name: "Use token" }).click();
    await tab.getByRole("link", { name: session }).waitFor();
    // The top bar says whom the API takes this tab for: the token's name.
    await tab.getByRole("button", { name: "e2e", exact: true }).waitFor();
    await tab.close();
    // `kubectl trawl open` signs a new tab in through the address's fragment, which the page
    // takes out of the address bar.
    const opened = await context.newPage();
    await opened.goto(`${url}/sessions#token=e2e-token-0123456789abcdef`);
    await opened.getByRole("link", { name: session }).waitFor();
    await opened.getByRole("button", { name: "e2e", exact: true }).waitFor();
    assert.equal(new URL(opened.url()).hash, "", "the token left the address bar");
    await opened.close();
  } finally {
    api.kill();
  }
});

test("nothing was requested from any other host", () => {
  assert.deepEqual(foreign, []);
});
