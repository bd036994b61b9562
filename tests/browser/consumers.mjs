// The real consumers of pybpftrace's files, driven for the tests; each prints what it saw as
// JSON on stdout, and the Python tests judge it:
//   node consumers.mjs flamegraph FILE.svg SHOTS_DIR CLICK_LABEL SEARCH_TERM
//       the SVG in headless Chromium: its frames, then after clicking CLICK_LABEL's frame,
//       then after typing SEARCH_TERM in its search field (a screenshot of each)
//   node consumers.mjs speedscope FILE SHOT.png
//       speedscope's own app (served here on 127.0.0.1) importing FILE: its profile names,
//       the frame names of its sandwich view, any import error
//   node consumers.mjs pprof FILE.pb.gz
//       the profile decoded by pprof-format: sample types, samples with their function names
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { gunzipSync } from "node:zlib";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
// Each wait of the browser: the tests' own (PYBPFTRACE_TEST_TIMEOUT, 60 s here and three times
// that in a VM under TCG, where Chromium renders speedscope's app in well over 30 s, and once
// did not answer for 90 s after drawing its toolbar, two VMs running: 2026-12-07).
const WAIT_MS = 1000 * Number(process.env.PYBPFTRACE_TEST_TIMEOUT || 60);
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
  // Chromium's watchdog crashes a GPU process that stops answering for seconds: speedscope's
  // WebGL, drawn by SwiftShader on the CPU, under TCG with a busy guest (its GPU process
  // exited twice with SIGSEGV, then the page crashed, on 2026-12-07)
  "--disable-gpu-watchdog",
];

async function browser() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: CHROMIUM_ARGS });
}

async function flamegraph(file, shots, clickLabel, searchTerm) {
  const chromium = await browser();
  try {
    const page = await chromium.newPage({ viewport: { width: 1220, height: 800 } });
    page.setDefaultTimeout(WAIT_MS);
    const errors = [];
    page.on("pageerror", (error) => errors.push(String(error)));
    await page.goto("file://" + path.resolve(file));
    const height = Number(await page.getAttribute("svg", "height"));
    await page.setViewportSize({ width: 1200, height: Math.min(Math.max(height, 200), 1600) });
    const frames = () => page.$$eval("g.frame", (groups) => groups.map((g) => {
      const rect = g.querySelector("rect");
      const box = rect.getBoundingClientRect();
      return {
        label: g.querySelector("title").textContent.split("\n")[0],
        depth: Number(g.getAttribute("data-d")),
        offset: Number(g.getAttribute("data-o")),
        weight: Number(g.getAttribute("data-w")),
        x: Number(rect.getAttribute("x")),
        width: Number(rect.getAttribute("width")),
        shownWidth: box.width,
        visible: getComputedStyle(g).display !== "none",
        text: g.querySelector("text").textContent,
        fill: getComputedStyle(rect).fill,
      };
    }));
    const result = { title: await page.textContent("#title"), subtitle: await page.textContent("#subtitle") };
    result.initial = await frames();
    await page.screenshot({ path: path.join(shots, "flamegraph.png") });
    const index = result.initial.findIndex((frame) => frame.label === clickLabel);
    if (index < 0) throw new Error(`no frame ${clickLabel}`);
    await page.locator("g.frame").nth(index).locator("rect").click();
    result.zoomed = await frames();
    await page.mouse.move(5, 5);
    await page.screenshot({ path: path.join(shots, "flamegraph-zoomed.png") });
    await page.keyboard.press("Escape");
    await page.fill("#search", searchTerm);
    result.searched = await frames();
    result.matched = await page.textContent("#matched");
    await page.screenshot({ path: path.join(shots, "flamegraph-search.png") });
    result.errors = errors;
    return result;
  } finally {
    await chromium.close();
  }
}

// speedscope's release build and the file to import, from one local server
function serve(file) {
  const app = path.join(here, "node_modules/speedscope/dist/release");
  const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".json": "application/json",
                  ".wasm": "application/wasm", ".woff2": "font/woff2", ".png": "image/png" };
  const server = createServer((request, response) => {
    const name = decodeURIComponent(new URL(request.url, "http://127.0.0.1").pathname);
    const source = name === "/profile" ? file : path.join(app, path.normalize(name === "/" ? "/index.html" : name));
    try {
      const body = readFileSync(source);
      response.writeHead(200, { "content-type": types[path.extname(source)] || "application/octet-stream" });
      response.end(body);
    } catch {
      response.writeHead(404);
      response.end();
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// speedscope draws with WebGL, which SwiftShader runs on the CPU; when its context is lost (the
// GPU process gone, as under TCG: 2026-12-07), what the page does meanwhile is the browser's
// failing, not the file's. The view is then taken once more, in a new browser, and said so.
async function speedscope(file, shot) {
  const first = await speedscopeOnce(file, shot);
  if (!first.contextsLost) return first;
  const again = await speedscopeOnce(file, shot);
  return { ...again, retried: { contextsLost: first.contextsLost, errors: first.errors } };
}

// Counts each WebGL context the page loses, from before its own scripts run.
function countLostContexts() {
  window.__contextsLost = 0;
  const getContext = HTMLCanvasElement.prototype.getContext;
  HTMLCanvasElement.prototype.getContext = function (...args) {
    if (String(args[0]).startsWith("webgl")) {
      this.addEventListener("webglcontextlost", () => { window.__contextsLost++; });
    }
    return getContext.apply(this, args);
  };
}

async function speedscopeOnce(file, shot) {
  const server = await serve(file);
  const chromium = await browser();
  try {
    const page = await chromium.newPage({ viewport: { width: 1400, height: 900 } });
    page.setDefaultTimeout(WAIT_MS);
    await page.addInitScript(countLostContexts);
    const dialogs = [];
    const errors = [];
    page.on("dialog", async (dialog) => { dialogs.push(dialog.message()); await dialog.dismiss(); });
    // with where it was thrown: the first lines of its stack
    page.on("pageerror", (error) => errors.push((error.stack || String(error)).split("\n").slice(0, 4).join("\n")));
    page.on("console", (message) => { if (message.type() === "error") errors.push(message.text()); });
    const base = `http://127.0.0.1:${server.address().port}`;
    // Only the page's first bytes are waited for here: its load and the profile's import are
    // one wait below, twice as long (the load alone once took over 90 s under single-threaded
    // TCG; the whole stays within the tests' wait for a consumer, ten of theirs)
    await page.goto(`${base}/index.html#profileURL=${encodeURIComponent(base + "/profile")}`, { waitUntil: "commit" });
    // Loaded: the toolbar names the profile (or an import error shows)
    await page.waitForFunction(() => /Something went wrong/.test(document.body.innerText) ||
                               document.body.innerText.includes("Sandwich"), null, { timeout: 2 * WAIT_MS });
    await page.waitForTimeout(0);
    const wentWrong = (await page.textContent("body")).includes("Something went wrong");
    const profiles = [];
    if (!wentWrong) {
      // Each profile (thread): its name in the toolbar, and its frames in the sandwich view's table
      await page.keyboard.press("3");
      const count = await profileCount(page);
      for (let index = 0; index < count; index++) {
        await sandwichShown(page, index, count);
        profiles.push({ lines: (await page.innerText("body")).split("\n").map((line) => line.trim()).filter(Boolean) });
        if (index === 0) await page.screenshot({ path: shot });
        await page.keyboard.press("n");
      }
    }
    const contextsLost = await page.evaluate(() => window.__contextsLost);
    return { wentWrong, dialogs, errors, profiles, contextsLost };
  } finally {
    await chromium.close();
    server.close();
  }
}

// The sandwich view of profile `index` (of `count`) drawn: the toolbar names it, and its table
// has rows below its header (drawn a frame after the header: on a busy machine, read too soon
// it was the header alone).
async function sandwichShown(page, index, count) {
  await page.waitForFunction(([index, count]) => {
    const text = document.body.innerText;
    const header = text.indexOf("Symbol Name");
    return (count === 1 || text.includes(`(${index + 1}/${count})`)) && header >= 0 &&
      text.slice(header + "Symbol Name".length).trim().length > 0;
  }, [index, count]);
}

async function profileCount(page) {
  const text = await page.textContent("body");
  const match = text.match(/\((\d+)\/(\d+)\)/);
  return match ? Number(match[2]) : 1;
}

async function pprof(file) {
  const { Profile } = await import("pprof-format");
  const profile = Profile.decode(gunzipSync(readFileSync(file)));
  const strings = profile.stringTable.strings;
  const text = (index) => strings[Number(index)];
  const functions = new Map(profile.function.map((f) => [String(f.id), f]));
  const locations = new Map(profile.location.map((l) => [String(l.id), l]));
  return {
    sampleTypes: profile.sampleType.map((t) => [text(t.type), text(t.unit)]),
    defaultSampleType: text(profile.defaultSampleType),
    durationNanos: Number(profile.durationNanos),
    comments: profile.comment.map(text),
    functions: profile.function.map((f) => ({ name: text(f.name), file: text(f.filename), startLine: Number(f.startLine) })),
    samples: profile.sample.map((sample) => ({
      // leaf first, as pprof keeps them
      stack: sample.locationId.map((id) => {
        const line = locations.get(String(id)).line[0];
        const f = functions.get(String(line.functionId));
        return { name: text(f.name), file: text(f.filename), line: Number(line.line) };
      }),
      values: sample.value.map(Number),
      labels: Object.fromEntries(sample.label.map((l) => [text(l.key), Number(l.str) ? text(l.str) : Number(l.num)])),
    })),
  };
}

const [command, ...args] = process.argv.slice(2);
const commands = { flamegraph, speedscope, pprof };
if (!commands[command]) {
  console.error(`usage: node consumers.mjs flamegraph|speedscope|pprof ...`);
  process.exit(64);
}
console.log(JSON.stringify(await commands[command](...args)));
