// npm run test:edge — OPT-125M generating inside workerd (Cloudflare's Workers runtime) within a
// Worker's 128 MB, its weights streamed from storage one decoder layer at a time.
//
//   1. `wasm-lm quantize` writes synthetic OPT-125M (full shape, seeded weights) as int8 safetensors,
//      the token embedding int8 too (--embed-dtype int8): 138 MB on disk, more than a Worker may hold.
//   2. Node loads that file resident and generates: the tokens workerd must reproduce exactly.
//   3. A local HTTP server honouring Range serves the file (the stand-in for R2 / the hub).
//   4. workerd runs entry-edge.mjs twice: MODE=empty (the process's own footprint) and the model
//      (stream + generate), each 3 times. A local workerd enforces no memory limit, so the memory
//      is measured from outside: the median peak RSS (VmHWM in /proc) of the model runs minus that
//      of the empty runs is the isolate's; the Worker also reports its WebAssembly memory.
// Passes when workerd's tokens equal Node's in every run and the isolate's peak is under 128 MiB.
// Options: --embed f16 (the file's int8 embedding replaced by f16), --resident-embeddings (keep the
// embedding / lm_head in WebAssembly memory instead of streaming it too), --tokens N, --runs N (3).
// Linux only (/proc). Needs `npm run build`.
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const HERE = join(ROOT, "test/runtimes");
const WORKERD = join(ROOT, "node_modules/.bin/workerd");
const LIMIT = 128 * 2 ** 20;
const PROMPT = "The meaning of life is";
const { values: args } = parseArgs({ options: {
  embed: { type: "string", default: "int8" }, tokens: { type: "string", default: "8" }, runs: { type: "string", default: "3" },
  "resident-embeddings": { type: "boolean", default: false },
} });
if (!["int8", "f16"].includes(args.embed)) throw new Error("--embed must be int8 or f16");
const NEW_TOKENS = Number(args.tokens);
const MiB = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;

for (const f of ["dist/index.js", "dist/cli.js", "build/wasm-lm.simd.wasm"]) {
  if (!existsSync(join(ROOT, f))) { console.error(`test:edge: ${f} missing: run 'npm run build' first`); process.exit(1); }
}
if (!existsSync("/proc/self/status")) { console.error("test:edge: needs Linux's /proc to measure memory"); process.exit(1); }

// 1. The checkpoint (kept in the temp directory between runs: quantizing takes ~10 s).
const modelDir = join(tmpdir(), `wasm-lm-edge-opt-125m-int8-embed-${args.embed}`);
if (!existsSync(join(modelDir, "model.safetensors"))) {
  console.log(`quantizing synthetic:opt-125m → ${modelDir}`);
  const q = spawnSync(process.execPath, [join(ROOT, "dist/cli.js"), "quantize", "-m", "synthetic:opt-125m", "--dtype", "int8",
    "--embed-dtype", args.embed, "--threads", "1", "--build", "simd", "--out", modelDir], { stdio: "inherit" });
  if (q.status !== 0) process.exit(1);
}
const fileBytes = statSync(join(modelDir, "model.safetensors")).size;
console.log(`checkpoint: ${modelDir}/model.safetensors, ${MiB(fileBytes)}`);

// 2. Node's tokens, from the file loaded whole.
const lib = await import(join(ROOT, "dist/index.js"));
const { loadModel } = await import(join(ROOT, "dist/node.js"));
const node = await loadModel(modelDir, { build: "simd", threads: 1 });
const expected = (await lib.generate(node.model, node.tokenizer, PROMPT, { maxNewTokens: NEW_TOKENS, ignoreEos: true })).new_tokens;
node.model.dispose();
console.log(`node (resident): ${JSON.stringify(expected)}`);

// 3. The storage: a directory over HTTP, with Range.
const served = { requests: 0, bytes: 0 };
const server = createServer((req, res) => {
  const file = join(modelDir, decodeURIComponent(new URL(req.url, "http://x").pathname).replace(/^\/+/, ""));
  if (!file.startsWith(modelDir) || !existsSync(file)) { res.writeHead(404).end(); return; }
  const size = statSync(file).size;
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
  served.requests++;
  if (!m) {
    served.bytes += size;
    res.writeHead(200, { "content-length": size, "accept-ranges": "bytes" });
    createReadStream(file).pipe(res);
    return;
  }
  const start = Number(m[1]);
  const end = Math.min(m[2] === "" ? size - 1 : Number(m[2]), size - 1);
  if (start > end) { res.writeHead(416, { "content-range": `bytes */${size}` }).end(); return; }
  served.bytes += end - start + 1;
  res.writeHead(206, { "content-length": end - start + 1, "content-range": `bytes ${start}-${end}/${size}`, "accept-ranges": "bytes" });
  createReadStream(file, { start, end }).pipe(res);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const base = `http://127.0.0.1:${server.address().port}/`;

// 4. workerd.
const dir = mkdtempSync(join(tmpdir(), "wasm-lm-edge-"));
const esbuild = await import("esbuild");
await esbuild.build({
  entryPoints: [join(HERE, "entry-edge.mjs")], bundle: true, format: "esm", platform: "neutral",
  outfile: join(dir, "worker.js"), conditions: ["workerd", "worker", "browser"], external: ["*.wasm"], logLevel: "warning",
});
copyFileSync(join(ROOT, "build/wasm-lm.simd.wasm"), join(dir, "wasm-lm.simd.wasm"));
const capnp = (mode) => `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
);
const worker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
    (name = "wasm-lm.simd.wasm", wasm = embed "wasm-lm.simd.wasm"),
  ],
  compatibilityDate = "2025-09-01",
  bindings = [
    (name = "MODE", text = "${mode}"),
    (name = "BASE_URL", text = "${base}"),
    (name = "PROMPT", text = ${JSON.stringify(PROMPT)}),
    (name = "NEW_TOKENS", text = "${NEW_TOKENS}"),
    (name = "RESIDENT_EMBEDDINGS", text = "${args["resident-embeddings"] ? 1 : 0}"),
  ],
);
`;

/** Run workerd on a config; its peak RSS from /proc while it runs, and the Worker's RESULT line. */
function runWorkerd(mode) {
  writeFileSync(join(dir, `${mode}.capnp`), capnp(mode));
  return new Promise((resolve) => {
    const child = spawn(WORKERD, ["test", join(dir, `${mode}.capnp`)], { stdio: ["ignore", "pipe", "pipe"] });
    let hwm = 0;
    const poll = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
        if (m) hwm = Math.max(hwm, Number(m[1]) * 1024);
      } catch { /* exited */ }
    }, 5);
    let out = "";
    const onData = (chunk) => {
      out += chunk;
      for (const line of chunk.split("\n")) if (line.includes("[workerd-edge]") || /error|exception/i.test(line)) console.log(line.trim());
    };
    child.stdout.setEncoding("utf8").on("data", onData);
    child.stderr.setEncoding("utf8").on("data", onData);
    const timer = setTimeout(() => child.kill("SIGKILL"), 300_000);
    child.on("close", (code) => {
      clearInterval(poll);
      clearTimeout(timer);
      const line = out.split("\n").find((l) => l.includes("RESULT "));
      resolve({ code, hwm, result: line ? JSON.parse(line.slice(line.indexOf("RESULT ") + 7)) : null });
    });
  });
}

// Peak RSS moves by ±5 MiB between identical runs (GC timing; workerd's own start): each Worker
// runs RUNS times and the medians are compared.
const RUNS = Number(args.runs);
const median = (xs) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
const failures = [];
try {
  const empties = [], models = [];
  for (let i = 0; i < RUNS; i++) empties.push(await runWorkerd("empty"));
  const toks = [];
  for (let i = 0; i < RUNS; i++) toks.push(await runWorkerd("tokenizer"));
  const before = { ...served };
  for (let i = 0; i < RUNS; i++) models.push(await runWorkerd("model"));
  for (const e of empties) if (e.code !== 0 || !e.result) failures.push(`the empty Worker failed (exit ${e.code})`);
  for (const m of models) if (m.code !== 0 || !m.result) failures.push(`the model Worker failed (exit ${m.code})`);
  for (const t of toks) if (t.code !== 0 || !t.result?.ok) failures.push(`the tokenizer Worker failed (exit ${t.code})`);
  if (!failures.length) {
    const r = models[0].result;
    const base = median(empties.map((e) => e.hwm));
    const peak = median(models.map((m) => m.hwm));
    const isolate = peak - base;
    const range = (xs) => `${MiB(Math.min(...xs))}–${MiB(Math.max(...xs))}`;
    const med = (f) => median(models.map((m) => f(m.result)));
    const perToken = (served.bytes - before.bytes) / RUNS / r.tokens.length; // a run's bytes (load included) per new token
    console.log(`\nworkerd ${spawnSync(WORKERD, ["--version"], { encoding: "utf8" }).stdout.trim()}, embedding ${args.embed} ${args["resident-embeddings"] ? "resident" : "streamed"}, prompt ${JSON.stringify(PROMPT)}, ${r.tokens.length} new tokens, ${RUNS} runs, medians`);
    for (const m of models) {
      console.log(`tokens      workerd ${JSON.stringify(m.result.tokens)} ${JSON.stringify(m.result.tokens) === JSON.stringify(expected) ? "=" : "≠"} node`);
      if (JSON.stringify(m.result.tokens) !== JSON.stringify(expected)) failures.push("workerd's tokens differ from node's");
    }
    console.log(`memory      peak RSS: workerd empty ${MiB(base)} (${range(empties.map((e) => e.hwm))}), with the model ${MiB(peak)} (${range(models.map((m) => m.hwm))}) → the isolate ${MiB(isolate)} (limit ${MiB(LIMIT)})`);
    console.log(`            of which the tokenizer alone ${MiB(median(toks.map((t) => t.hwm)) - base)} (a Worker that only loads it)`);
    console.log(`            WebAssembly memory ${MiB(r.wasmBytes)} (arena in use ${MiB(r.arenaUsed)}); checkpoint ${MiB(fileBytes)}`);
    console.log(`speed       load ${med((x) => x.loadMs)} ms, prefill ${med((x) => x.timings.prefill_ms).toFixed(0)} ms, decode ${med((x) => x.timings.decode_ms_per_token).toFixed(0)} ms/token`);
    console.log(`storage     ${(served.requests - before.requests) / RUNS} requests, ${MiB(perToken * r.tokens.length)} read per run (${MiB(perToken)} per new token, load included)`);
    if (isolate >= LIMIT) failures.push(`the isolate's peak ${MiB(isolate)} is over ${MiB(LIMIT)}`);
    if (r.wasmBytes >= LIMIT) failures.push(`WebAssembly memory ${MiB(r.wasmBytes)} is over ${MiB(LIMIT)}`);
  }
} finally {
  server.close();
  rmSync(dir, { recursive: true, force: true });
}
console.log(failures.length ? `edge: FAIL ${failures.join("; ")}` : "edge: pass (OPT-125M generated inside workerd within 128 MiB)");
process.exit(failures.length ? 1 : 0);
