// The web UI in headless Chromium (Debian's, driven by playwright-core) through `kubectl trawl
// open`'s proxy to the Kubernetes API server: signed in as the kubeconfig identity with no token
// anywhere, the page, its scripts and the API all come through the aggregated API. The real-node
// test (e2e/tests/real_node.rs) starts `kubectl trawl open --no-browser` as a certificate user and
// runs this.
//
// Run: TRAWL_UI_URL=http://127.0.0.1:PORT TRAWL_SESSION=ns/name TRAWL_USER=trawl-admin node --test e2e/signed-in.mjs
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

const base = process.env.TRAWL_UI_URL;
const session = process.env.TRAWL_SESSION;
const user = process.env.TRAWL_USER;

let browser;
let page;
const foreign = [];

before(async () => {
  assert.ok(base && session && user, "TRAWL_UI_URL, TRAWL_SESSION and TRAWL_USER");
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  page = await (await browser.newContext()).newPage();
  const origin = new URL(base).origin;
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(origin) && !url.startsWith("data:") && !url.startsWith("blob:")) foreign.push(url);
  });
});

after(async () => {
  await browser?.close();
});

test("the UI is signed in as the kubeconfig identity and lists the session", async () => {
  await page.goto(`${base}/sessions`);
  await page.getByRole("button", { name: user }).waitFor();
  await page.getByRole("link", { name: session }).waitFor();
  assert.deepEqual(foreign, [], "every request went to the plugin's proxy");
});
