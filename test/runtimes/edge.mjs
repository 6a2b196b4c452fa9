// npm run test:edge — OPT-125M and SmolLM2-135M (LLaMA family, grouped-query attention) generating
// inside workerd (Cloudflare's Workers runtime) within a Worker's 128 MB, their weights streamed from
// storage one decoder layer at a time.
//
//   1. `wasm-lm quantize` writes each synthetic model (full shape, seeded weights) as int8
//      safetensors, the token embedding int8 too (--embed-dtype int8): 132 MiB (OPT-125M) and
//      136 MiB (SmolLM2-135M) on disk, more than a Worker may hold.
//   2. Node loads that file resident and generates: the tokens workerd must reproduce exactly.
//   3. A local HTTP server honouring Range serves the files (the stand-in for R2 / the hub), each
//      model under /<name>/.
//   4. workerd runs entry-edge.mjs: MODE=empty (the process's own footprint) and MODE=tokenizer
//      once, then each model (stream + generate), each 3 times. A local workerd enforces no memory
//      limit, so the memory is measured from outside: the median peak RSS (VmHWM in /proc) of a
//      model's runs minus that of the empty runs is the isolate's; the Worker also reports its
//      WebAssembly memory.
// Passes when, for every model, workerd's tokens equal Node's in every run and the isolate's peak
// is under 128 MiB. Synthetic models of every family use the OPT tokenizer `wasm-lm quantize` copies.
// Options: --model opt-125m|smollm2-135m (default: both), --embed f16 (the file's int8 embedding
// replaced by f16), --resident-embeddings (keep the embedding / lm_head in WebAssembly memory
// instead of streaming it too), --tokens N, --runs N (3).
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
/** The models, by synthetic preset; each name is also its directory on the Range server. */
const MODELS = { "opt-125m": "OPT-125M", "smollm2-135m": "SmolLM2-135M" };
const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    embed: { type: "string", default: "int8" },
    tokens: { type: "string", default: "8" },
    runs: { type: "string", default: "3" },
    "resident-embeddings": { type: "boolean", default: false },
  },
});
if (!["int8", "f16"].includes(args.embed)) throw new Error("--embed must be int8 or f16");
if (args.model !== undefined && !(args.model in MODELS)) throw new Error(`--model must be one of ${Object.keys(MODELS).join(", ")}`);
const models = args.model ? [args.model] : Object.keys(MODELS);
const NEW_TOKENS = Number(args.tokens);
const MiB = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;

for (const f of ["dist/index.js", "dist/cli.js", "build/wasm-lm.simd.wasm"]) {
  if (!existsSync(join(ROOT, f))) {
    console.error(`test:edge: ${f} missing: run 'npm run build' first`);
    process.exit(1);
  }
}
if (!existsSync("/proc/self/status")) {
  console.error("test:edge: needs Linux's /proc to measure memory");
  process.exit(1);
}

// 1. The checkpoints (kept in the temp directory between runs: quantizing takes ~5 s each).
const modelDir = (name) => join(tmpdir(), `wasm-lm-edge-${name}-int8-embed-${args.embed}`);
const fileBytes = {};
for (const name of models) {
  const out = modelDir(name);
  if (!existsSync(join(out, "model.safetensors"))) {
    console.log(`quantizing synthetic:${name} → ${out}`);
    const q = spawnSync(
      process.execPath,
      [
        join(ROOT, "dist/cli.js"),
        "quantize",
        "-m",
        `synthetic:${name}`,
        "--dtype",
        "int8",
        "--embed-dtype",
        args.embed,
        "--threads",
        "1",
        "--build",
        "simd",
        "--out",
        out,
      ],
      { stdio: "inherit" },
    );
    if (q.status !== 0) process.exit(1);
  }
  fileBytes[name] = statSync(join(out, "model.safetensors")).size;
  console.log(`checkpoint: ${out}/model.safetensors, ${MiB(fileBytes[name])}`);
}

// 2. Node's tokens, from each file loaded whole.
const lib = await import(join(ROOT, "dist/index.js"));
const { loadModel } = await import(join(ROOT, "dist/node.js"));
const expected = {};
for (const name of models) {
  const node = await loadModel(modelDir(name), { build: "simd", threads: 1 });
  expected[name] = (await lib.generate(node.model, node.tokenizer, PROMPT, { maxNewTokens: NEW_TOKENS, ignoreEos: true })).new_tokens;
  node.model.dispose();
  console.log(`node (resident) ${name}: ${JSON.stringify(expected[name])}`);
}

// 3. The storage: a directory over HTTP, with Range.
const served = { requests: 0, bytes: 0 };
const server = createServer((req, res) => {
  const [, name, path] = /^\/([^/]+)\/(.*)$/.exec(decodeURIComponent(new URL(req.url, "http://x").pathname)) ?? [];
  const root = models.includes(name) ? modelDir(name) : null;
  const file = root && join(root, path);
  if (!file || !file.startsWith(root + "/") || !existsSync(file)) {
    res.writeHead(404).end();
    return;
  }
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
  if (start > end) {
    res.writeHead(416, { "content-range": `bytes */${size}` }).end();
    return;
  }
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
  entryPoints: [join(HERE, "entry-edge.mjs")],
  bundle: true,
  format: "esm",
  platform: "neutral",
  outfile: join(dir, "worker.js"),
  conditions: ["workerd", "worker", "browser"],
  external: ["*.wasm"],
  logLevel: "warning",
});
copyFileSync(join(ROOT, "build/wasm-lm.simd.wasm"), join(dir, "wasm-lm.simd.wasm"));
const capnp = (mode, name) => `using Workerd = import "/workerd/workerd.capnp";
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
    (name = "BASE_URL", text = "${base}${name}/"),
    (name = "PROMPT", text = ${JSON.stringify(PROMPT)}),
    (name = "NEW_TOKENS", text = "${NEW_TOKENS}"),
    (name = "RESIDENT_EMBEDDINGS", text = "${args["resident-embeddings"] ? 1 : 0}"),
  ],
);
`;

/** Run workerd on a config (a mode, and the model directory it reads); its peak RSS from /proc while it runs, and the Worker's RESULT line. */
function runWorkerd(mode, name = models[0]) {
  const config = join(dir, `${mode}-${name}.capnp`);
  writeFileSync(config, capnp(mode, name));
  return new Promise((resolve) => {
    const child = spawn(WORKERD, ["test", config], { stdio: ["ignore", "pipe", "pipe"] });
    let hwm = 0;
    const poll = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
        if (m) hwm = Math.max(hwm, Number(m[1]) * 1024);
      } catch {
        /* exited */
      }
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
const summary = [];
try {
  // The process's own footprint and the tokenizer's share: the same for every model (the same bundle,
  // the same OPT tokenizer files).
  const empties = [],
    toks = [];
  for (let i = 0; i < RUNS; i++) empties.push(await runWorkerd("empty"));
  for (let i = 0; i < RUNS; i++) toks.push(await runWorkerd("tokenizer"));
  for (const e of empties) if (e.code !== 0 || !e.result) failures.push(`the empty Worker failed (exit ${e.code})`);
  for (const t of toks) if (t.code !== 0 || !t.result?.ok) failures.push(`the tokenizer Worker failed (exit ${t.code})`);
  const baseline = median(empties.map((e) => e.hwm));
  const range = (xs) => `${MiB(Math.min(...xs))}–${MiB(Math.max(...xs))}`;
  const version = spawnSync(WORKERD, ["--version"], { encoding: "utf8" }).stdout.trim();
  if (!failures.length) {
    console.log(
      `\n${version}: empty Worker peak RSS ${MiB(baseline)} (${range(empties.map((e) => e.hwm))}); ` +
        `a Worker that only loads the tokenizer ${MiB(median(toks.map((t) => t.hwm)) - baseline)} more`,
    );
  }
  for (const name of failures.length ? [] : models) {
    const runs = [];
    const before = { ...served };
    for (let i = 0; i < RUNS; i++) runs.push(await runWorkerd("model", name));
    const bad = runs.filter((m) => m.code !== 0 || !m.result);
    if (bad.length) {
      failures.push(`the ${name} Worker failed (exit ${bad.map((m) => m.code).join(", ")})`);
      continue;
    }
    const r = runs[0].result;
    const peak = median(runs.map((m) => m.hwm));
    const isolate = peak - baseline;
    const med = (f) => median(runs.map((m) => f(m.result)));
    const perToken = (served.bytes - before.bytes) / RUNS / r.tokens.length; // a run's bytes (load included) per new token
    console.log(
      `\n${MODELS[name]} (${r.family}, ${r.layerDType} layers), embedding ${args.embed} ${args["resident-embeddings"] ? "resident" : "streamed"}, ` +
        `prompt ${JSON.stringify(PROMPT)}, ${r.tokens.length} new tokens, ${RUNS} runs, medians`,
    );
    for (const m of runs) {
      const same = JSON.stringify(m.result.tokens) === JSON.stringify(expected[name]);
      console.log(`tokens      workerd ${JSON.stringify(m.result.tokens)} ${same ? "=" : "≠"} node`);
      if (!same) failures.push(`${name}: workerd's tokens differ from node's`);
    }
    console.log(
      `memory      peak RSS with the model ${MiB(peak)} (${range(runs.map((m) => m.hwm))}) → the isolate ${MiB(isolate)} (limit ${MiB(LIMIT)})`,
    );
    console.log(
      `            WebAssembly memory ${MiB(r.wasmBytes)} (arena in use ${MiB(r.arenaUsed)}); checkpoint ${MiB(fileBytes[name])}`,
    );
    const decode = med((x) => x.timings.decode_ms_per_token);
    console.log(
      `speed       load ${med((x) => x.loadMs)} ms, prefill ${med((x) => x.timings.prefill_ms).toFixed(0)} ms, ` +
        `decode ${decode.toFixed(0)} ms/token (${(1000 / decode).toFixed(2)} tokens/s)`,
    );
    console.log(
      `storage     ${(served.requests - before.requests) / RUNS} requests, ${MiB(perToken * r.tokens.length)} read per run (${MiB(perToken)} per new token, load included)`,
    );
    if (isolate >= LIMIT) failures.push(`${name}: the isolate's peak ${MiB(isolate)} is over ${MiB(LIMIT)}`);
    if (r.wasmBytes >= LIMIT) failures.push(`${name}: WebAssembly memory ${MiB(r.wasmBytes)} is over ${MiB(LIMIT)}`);
    summary.push(`${MODELS[name]} isolate ${MiB(isolate)}`);
  }
} finally {
  server.close();
  rmSync(dir, { recursive: true, force: true });
}
console.log(
  failures.length
    ? `edge: FAIL ${failures.join("; ")}`
    : `edge: pass (${summary.join(", ")}: generated inside workerd within ${MiB(LIMIT)}, tokens = node's)`,
);
process.exit(failures.length ? 1 : 0);
