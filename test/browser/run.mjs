// npm run test:browser — the runtime checks (test/runtimes/checks.mjs) in headless Chromium:
// Debian's /usr/bin/chromium driven by playwright-core (no browser download), pages served by a
// small static server on 127.0.0.1 started here, twice:
//   isolated       COOP same-origin + COEP require-corp: SharedArrayBuffer exists. The page's main
//                  thread runs the checks on one thread (threads: 2 must fail clearly there: a page's
//                  main thread may not Atomics.wait); a module Web Worker runs them with threads: 2.
//   not-isolated   no such headers: no SharedArrayBuffer, one thread everywhere, and threads: 2
//                  must fail with wasm-lm's clear error, on the page and in the worker.
// Each runs the checks on every tiny fixture (MODEL_FIXTURES: OPT, LLaMA, GPT-2).
// On each, the "loader" row: loadModelFromUrl on the page (loader.mjs) downloads the OPT fixture from
// the server's hub layout with progress, then after a reload reads it from the Cache API — the
// server must see no request for its files the second time; and a "stream" row per fixture:
// loadModelFromUrl with stream: true, the checkpoint read by Range requests.
// page.mjs and worker.mjs are bundled by esbuild, resolving "wasm-lm" through package.json's
// "browser" export. Needs `npm run build`. Exits 1 on any failure; last line "browser: N passed, M failed".
import { createServer } from "node:http";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { MODEL_FIXTURES, worstLogitsDiff } from "../runtimes/checks.mjs";
import { CHROMIUM_ARGS } from "./chromium.mjs";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const HERE = join(ROOT, "test/browser");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const TIMEOUT_MS = 120_000;

for (const f of ["dist/index.js", "build/wasm-lm.simd.wasm", "build/wasm-lm.relaxed-mt.wasm"]) {
  if (!existsSync(join(ROOT, f))) {
    console.error(`test:browser: ${f} missing: run 'npm run build' first`);
    process.exit(1);
  }
}
if (!existsSync(CHROMIUM)) {
  console.error(`test:browser: ${CHROMIUM} not found: install Debian's Chromium (apt-get install -y chromium) or set CHROMIUM_PATH`);
  console.log("browser: 0 passed, 1 failed");
  process.exit(1);
}

const t0 = performance.now();
const tmp = mkdtempSync(join(tmpdir(), "wasm-lm-browser-"));
const bundleDir = join(tmp, "bundle");
const esbuild = await import("esbuild");
await esbuild.build({
  entryPoints: { page: join(HERE, "page.mjs"), worker: join(HERE, "worker.mjs") },
  bundle: true,
  format: "esm",
  platform: "browser",
  outdir: bundleDir,
  logLevel: "warning",
});

// URL prefix → directory. Only these are served; anything else is a 404.
const ROUTES = [
  ["/bundle/", bundleDir],
  ["/build/", join(ROOT, "build")],
  ...MODEL_FIXTURES.map((m) => [`/fixtures/${m}/`, join(ROOT, "test/fixtures", m)]),
  ["/fixtures/opt-tokenizer/", join(ROOT, "test/fixtures/opt-tokenizer")],
  // The same models in the hub layout (/<owner>/<name>/resolve/<revision>/), for loadModelFromUrl.
  ...MODEL_FIXTURES.map((m) => [`/test/${m}/resolve/main/`, join(ROOT, "test/fixtures", m)]),
  ["/test/opt-tiny/resolve/main/", join(ROOT, "test/fixtures/opt-tokenizer")],
];
const TYPES = {
  ".js": "text/javascript",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".txt": "text/plain",
  ".html": "text/html",
};
const INDEX = `<!doctype html><meta charset="utf-8"><title>wasm-lm browser test</title><script type="module" src="/bundle/page.js"></script>`;

function serve(isolated) {
  const requests = [];
  const server = createServer((req, res) => {
    requests.push(req.url);
    const headers = { "Cache-Control": "no-store" };
    if (isolated) {
      Object.assign(headers, {
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Embedder-Policy": "require-corp",
        "Cross-Origin-Resource-Policy": "same-origin",
      });
    }
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    if (path === "/favicon.ico") {
      res.writeHead(204, headers).end();
      return;
    }
    if (path === "/") {
      res.writeHead(200, { ...headers, "Content-Type": "text/html" }).end(INDEX);
      return;
    }
    for (const [prefix, dir] of ROUTES) {
      if (!path.startsWith(prefix)) continue;
      const file = normalize(join(dir, path.slice(prefix.length)));
      if (!file.startsWith(dir + "/") || !existsSync(file)) continue;
      const ext = file.slice(file.lastIndexOf("."));
      const body = readFileSync(file);
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
      if (range) {
        // Range requests, as the hub's CDN answers them (loadModelFromUrl's stream mode).
        server.ranges = (server.ranges ?? 0) + 1;
        const a = Number(range[1]),
          b = Math.min(Number(range[2]), body.length - 1);
        res
          .writeHead(206, { ...headers, "Content-Type": "application/octet-stream", "Content-Range": `bytes ${a}-${b}/${body.length}` })
          .end(body.subarray(a, b + 1));
        return;
      }
      res.writeHead(200, { ...headers, "Content-Type": TYPES[ext] ?? "application/octet-stream" }).end(body);
      return;
    }
    res.writeHead(404, headers).end("not found");
  });
  server.requests = requests;
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

const { chromium } = await import("playwright-core");
const profile = join(tmp, "profile");
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: CHROMIUM_ARGS,
});
const version = context.browser()?.version() ?? "?";
console.log(`== chromium ${version} (${CHROMIUM}, headless)`);

/** Two visits of loader.mjs's check, with a reload between: download, then the Cache API only. */
async function loaderCheck(page, server) {
  const visit = async (first) => {
    await page.waitForFunction(() => typeof window.__loader === "function", null, { timeout: 30_000 });
    const before = server.requests.length;
    const r = await page.evaluate((f) => window.__loader(f), first);
    return { ...r, hub: server.requests.slice(before).filter((u) => u.startsWith("/test/opt-tiny/resolve/main/")) };
  };
  const a = await visit(true);
  await page.reload();
  const b = await visit(false);
  const failures = [...a.failures.map((f) => `first visit: ${f}`), ...b.failures.map((f) => `after reload: ${f}`)];
  const names = (urls) => urls.map((u) => u.split("/").pop());
  for (const f of ["config.json", "model.safetensors"]) {
    if (!names(a.hub).includes(f)) failures.push(`first visit: ${f} was not requested`);
    if (!a.keys.includes(`/test/opt-tiny/resolve/main/${f}`)) failures.push(`first visit: ${f} is not in the cache (${a.keys.join(" ")})`);
  }
  // Only the files the directory lacks (tokenizer.json: 404s are not cached) may be asked for again.
  const again = names(b.hub).filter((f) => f !== "tokenizer.json");
  if (again.length) failures.push(`after reload: the server was asked for ${again.join(", ")}`);
  console.log(
    `loader: first visit ${a.ms?.toFixed(0)} ms, ${a.events} progress events, requests ${names(a.hub).join(" ")}; ` +
      `after reload ${b.ms?.toFixed(0)} ms, requests ${names(b.hub).join(" ") || "none"}`,
  );
  return { ok: failures.length === 0, failures, logits: Math.max(a.logits ?? Infinity, b.logits ?? Infinity) };
}

const rows = [];
try {
  for (const isolated of [true, false]) {
    const server = await serve(isolated);
    const url = `http://127.0.0.1:${server.address().port}/`;
    const tag = isolated ? "isolated" : "not-isolated";
    console.log(`\n== ${tag} page: ${url}${isolated ? " (COOP same-origin, COEP require-corp)" : " (no COOP/COEP)"}`);
    const page = await context.newPage();
    page.on("console", (m) => console.log(m.text()));
    page.on("pageerror", (e) => console.log(`[${tag}] page error: ${e.message}`));
    let out;
    let loader;
    try {
      await page.goto(url);
      await page.waitForFunction(() => typeof window.__run === "function", null, { timeout: 30_000 });
      out = await Promise.race([
        page.evaluate(() => window.__run()),
        new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out after ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS)),
      ]);
      if (out.isolated !== isolated) {
        out.page.ok = false;
        out.page.failures.push(`crossOriginIsolated is ${out.isolated}, expected ${isolated}`);
      }
    } catch (e) {
      const failed = { ok: false, failures: [e.message], figures: {} };
      out = { page: failed, worker: failed };
    }
    const streams = [];
    try {
      loader = await loaderCheck(page, server);
      for (const m of MODEL_FIXTURES) {
        try {
          const before = server.ranges ?? 0;
          const r = await page.evaluate((name) => window.__stream(name), m);
          const ranges = (server.ranges ?? 0) - before;
          if (ranges === 0) r.failures.push("the server saw no Range request");
          console.log(`stream ${m}: ${ranges} range requests, load ${r.ms.toFixed(0)} ms, logits max|Δ| ${r.logits.toExponential(2)}`);
          streams.push([`stream ${m}`, { ok: r.failures.length === 0, failures: r.failures, logits: r.logits }]);
        } catch (e) {
          streams.push([`stream ${m}`, { ok: false, failures: [e.message.split("\n")[0]] }]);
        }
      }
    } catch (e) {
      loader ??= { ok: false, failures: [e.message.split("\n")[0]] };
    } finally {
      await page.close();
      server.closeAllConnections(); // Chromium's keep-alive connections would hold close() open
      await new Promise((r) => server.close(r));
    }
    for (const [where, r] of [
      ["page", out.page],
      ["worker", out.worker],
    ]) {
      const f = r.figures;
      const th = f.threads;
      const logits = worstLogitsDiff(f);
      rows.push({
        name: `${tag} ${where}`,
        ok: r.ok,
        builds: (f.builds ?? []).join("+") || "-",
        models: (f.models ?? []).map((m) => m.replace(/-tiny$/, "")).join("+") || "-",
        logits: logits === undefined ? "-" : logits.toExponential(2),
        threads: !th ? "-" : th.works ? `${th.threads}${th.bitIdentical ? " (bit-identical)" : " (DIFFERENT)"}` : "1 (clear error for 2)",
        why: r.failures.join("; "),
      });
    }
    for (const [what, r] of [["loader", loader], ...streams]) {
      rows.push({
        name: `${tag} ${what}`,
        ok: r.ok,
        builds: "auto",
        threads: "1",
        models: what === "loader" ? "opt" : what.replace(/^stream (.*)-tiny$/, "$1"),
        logits: Number.isFinite(r.logits) ? r.logits.toExponential(2) : "-",
        why: r.failures.join("; "),
      });
    }
  }
} finally {
  await context.close();
  rmSync(tmp, { recursive: true, force: true });
}

const pad = (s, n) => String(s).padEnd(n);
console.log(
  `\n${pad("chromium " + version, 34)}${pad("builds", 14)}${pad("models", 16)}${pad("threads", 22)}${pad("max|Δlogit|", 13)}result`,
);
for (const r of rows)
  console.log(
    `${pad(r.name, 34)}${pad(r.builds, 14)}${pad(r.models, 16)}${pad(r.threads, 22)}${pad(r.logits, 13)}${r.ok ? "pass" : `FAIL ${r.why}`}`,
  );
const passed = rows.filter((r) => r.ok).length;
console.log(`(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
console.log(`browser: ${passed} passed, ${rows.length - passed} failed`);
process.exit(passed === rows.length ? 0 : 1);
