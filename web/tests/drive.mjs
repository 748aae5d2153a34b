// Drives the page in headless Chromium (playwright-core with the system's chromium: no
// browser can be downloaded here) through a list of steps, and prints what it saw as
// JSON. Used by tests/test_web.py, benchmarks/web_speed.py and scripts/web_screenshot.py.
//
//   node web/tests/drive.mjs SPEC.json      (or the spec as JSON on stdin with "-")
//
// SPEC: {"url": "...", "chromium": "/usr/bin/chromium", "timeout": ms, "viewport": [w, h],
//        "webgpu": true (optional: a WebGPU adapter, SwiftShader's software Vulkan, which
//                  Debian's chromium ships: the page's WebGPU path runs with no GPU),
//        "sampleMemory": ms (optional: sample the browser's memory this often),
//        "steps": [
//          {"goto": "url"}                  load another URL (a fresh page state)
//          {"open": "photo.png"}            set the file input
//          {"waitRuns": n}                  wait until n runs are done (or an error shows)
//          {"waitMessage": true}            wait until the page shows a message
//          {"waitFor": "js expression"}     wait until it is truthy; its value
//          {"strength": 0.5}                move the strength slider (re-runs)
//          {"download": "out.png"}          click Download PNG and save the file
//          {"screenshot": "page.png"}       screenshot of the page
//          {"eval": "js expression"}        its value
//        ]}
// Output: {"steps": [result per step], "times": [seconds since the start, per step], "runs": window.malleconv.runs, "message": text,
//          "peakPssMB": peak memory (PSS) of all the browser's processes, or null, "log": [...]}
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { chromium } from "playwright-core";

const spec = JSON.parse(
  process.argv[2] === "-" || !process.argv[2]
    ? readFileSync(0, "utf8")
    : readFileSync(process.argv[2], "utf8"),
);
const timeout = spec.timeout ?? 120_000;

// Without the networking flags chromium keeps trying to reach Google services, which on a
// closed network means a flood of refused connections.
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
];

// WebGPU on SwiftShader: chromium's CPU implementation of Vulkan, for checking what the
// page computes on its WebGPU path (not how fast a GPU would run it).
const WEBGPU_ARGS = ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader",
  "--enable-features=Vulkan"];

const log = [];
const browser = await chromium.launch({
  executablePath: spec.chromium ?? "/usr/bin/chromium",
  args: spec.webgpu ? [...ARGS.filter((a) => a !== "--disable-gpu"), ...WEBGPU_ARGS] : ARGS,
  headless: true,
  timeout,
});

// Peak memory (only with "sampleMemory": ms between samples): the summed PSS (shared
// pages split between the processes sharing them) of every process below this one, which
// is chromium's whole tree: playwright-core starts it as a child of this process. PSS is
// costly to read, so it is read only for those processes.
let peakPss = 0;
const pid = process.platform === "linux" && spec.sampleMemory ? process.pid : null;
async function pssOfTree(root) {
  const { readdir } = await import("node:fs/promises");
  const children = new Map();
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = await readFile(`/proc/${name}/status`, "utf8");
      const ppid = Number(/PPid:\s+(\d+)/.exec(status)?.[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(name));
    } catch { /* the process ended meanwhile */ }
  }
  let kb = 0;
  const todo = [...(children.get(root) ?? [])];
  while (todo.length) {
    const p = todo.pop();
    const rollup = await readFile(`/proc/${p}/smaps_rollup`, "utf8").catch(() => "");
    kb += Number(/Pss:\s+(\d+)/.exec(rollup)?.[1] ?? 0);
    todo.push(...(children.get(p) ?? []));
  }
  return kb / 1024;
}
const sampler = pid
  ? setInterval(async () => { peakPss = Math.max(peakPss, await pssOfTree(pid)); },
    spec.sampleMemory)
  : null;

const out = { steps: [], times: [], runs: [], message: "", peakPssMB: null, log };
const started = performance.now();
try {
  const context = await browser.newContext({
    acceptDownloads: true,
    viewport: spec.viewport ? { width: spec.viewport[0], height: spec.viewport[1] } : undefined,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => log.push(`console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));
  page.on("requestfailed", (r) => log.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  await page.goto(spec.url, { waitUntil: "load" });
  await page.waitForFunction(() => window.malleconv !== undefined);

  for (const step of spec.steps ?? []) {
    let result = null;
    if (step.goto !== undefined) {
      await page.goto(step.goto, { waitUntil: "load" });
      await page.waitForFunction(() => window.malleconv !== undefined);
    } else if (step.open !== undefined) {
      await page.setInputFiles("#file", step.open);
    } else if (step.waitRuns !== undefined) {
      await page.waitForFunction(
        (n) => window.malleconv.runs.length >= n || window.malleconv.state === "error",
        step.waitRuns, { timeout: step.timeout ?? timeout, polling: 200 },
      );
      result = await page.evaluate(() => window.malleconv.state);
    } else if (step.waitFor !== undefined) {
      const handle = await page.waitForFunction(step.waitFor, null,
        { timeout: step.timeout ?? timeout, polling: 100 });
      result = await handle.jsonValue();
    } else if (step.waitMessage) {
      await page.waitForSelector("#message:not([hidden])", { timeout: step.timeout ?? timeout });
      result = await page.textContent("#message");
    } else if (step.strength !== undefined) {
      await page.$eval("#strength", (el, v) => {
        el.value = String(v);
        el.dispatchEvent(new Event("input", { bubbles: true }));
        el.dispatchEvent(new Event("change", { bubbles: true }));
      }, step.strength);
    } else if (step.download !== undefined) {
      const [download] = await Promise.all([
        page.waitForEvent("download"),
        page.click("#download"),
      ]);
      await download.saveAs(step.download);
      result = step.download;
    } else if (step.screenshot !== undefined) {
      await page.screenshot({ path: step.screenshot, fullPage: Boolean(step.fullPage) });
      result = step.screenshot;
    } else if (step.eval !== undefined) {
      result = await page.evaluate(step.eval);
    }
    out.steps.push(result);
    out.times.push((performance.now() - started) / 1000);
  }
  out.runs = await page.evaluate(() => window.malleconv.runs);
  out.message = (await page.$eval("#message", (el) => (el.hidden ? "" : el.textContent))) ?? "";
} catch (err) {
  out.error = String(err && err.stack ? err.stack : err);
} finally {
  if (sampler) clearInterval(sampler);
  if (pid) peakPss = Math.max(peakPss, await pssOfTree(pid).catch(() => 0));
  out.peakPssMB = pid ? Math.round(peakPss) : null;
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(out.error ? 1 : 0);
