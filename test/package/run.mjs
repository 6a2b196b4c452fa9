// npm run test:package — the package as users get it: `npm pack`, the tarball installed into an
// empty project in a temp directory, and the README's commands run there.
//
//   contents        the tarball holds what users need (dist/*.js + .d.ts, the four build/*.wasm,
//                   tokenizers/opt, README.md, LICENSE, CHANGELOG.md, package.json) and nothing
//                   else: no test fixtures, sources, .wat or source maps, and no dist file whose
//                   src/*.ts is gone (a stale build); every "exports" target and the bin is in it
//   install         npm install <tarball> into an empty project (dependencies from npm's cache)
//   cli synthetic   npx wasm-lm generate --prompt "Hello" --max-new-tokens 4  (the default model)
//   cli fixture     npx wasm-lm generate --model <copied opt-tiny> --ids … --ignore-eos --json:
//                   32 tokens = transformers' (the fixture's reference.json)
//   cli version     npx -- wasm-lm --version = package.json's (npx keeps a bare --version for itself)
//   cli notice      the synthetic default says in one stderr line that its weights are random
//   cli prompt-file echo Hello | npx wasm-lm generate --prompt-file - … = --prompt Hello
//   cli hf cache    HF_HOME=<a cache in huggingface_hub's layout> HF_HUB_OFFLINE=1 npx wasm-lm logits
//                   --model owner/name …: transformers' logits, no request
//   cli tokenize    echo hi | npx wasm-lm tokenize --text-file - --json  = the repository's CLI
//   esm imports     a script importing "wasm-lm", "wasm-lm/node", "wasm-lm/server", "wasm-lm/kernels",
//                   "wasm-lm/internals" and resolving "wasm-lm/build/*.wasm": generate, then the same
//                   through createHandler; a kernel call; an Arena over loadWasm()
//   types           tsc (NodeNext) on a .ts file importing the five entry points
//
// `npm pack` runs prepack (a clean build); --no-build packs the current dist/ and build/ instead
// (npm pack --ignore-scripts: what CI does after `npm test` has built them). `npx --no` never
// downloads: a missing bin fails instead of fetching something else. One line per check, then
// "package: N passed, M failed"; exit code 1 on any failure.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const { values: args } = parseArgs({
  options: { "no-build": { type: "boolean", default: false }, keep: { type: "boolean", default: false } },
});
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
const tmp = mkdtempSync(join(tmpdir(), "wasm-lm-package-"));
const app = join(tmp, "app");
const t0 = performance.now();
const results = [];

// A user's shell: `npm run` puts node_modules/.bin first on PATH, and this repository's holds an
// old npm (6, a dependency of as-pect's) that would shadow the real npm and npx.
const PATH = (process.env.PATH ?? "")
  .split(delimiter)
  .filter((p) => !/node_modules[\\/]\.bin$|node-gyp-bin$/.test(p))
  .join(delimiter);
const ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));

/** Run a command (bounded); throws with its stderr on a non-zero exit. */
function sh(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, {
    cwd: app,
    encoding: "utf8",
    timeout: 300_000,
    maxBuffer: 64 << 20,
    ...opts,
    env: { ...ENV, PATH, ...opts.env },
  });
  if (r.error) throw new Error(`${cmd} ${argv.join(" ")}: ${r.error.message}`);
  if (r.status !== 0)
    throw new Error(`${cmd} ${argv.join(" ")}: exit ${r.status}: ${(r.stderr || r.stdout).trim().split("\n").slice(-4).join(" | ")}`);
  return r.stdout;
}

async function check(name, fn) {
  const start = performance.now();
  let failures;
  let detail = "";
  try {
    const r = await fn();
    failures = r?.failures ?? [];
    detail = r?.detail ?? "";
  } catch (e) {
    failures = [e.message];
  }
  const s = ((performance.now() - start) / 1000).toFixed(1);
  results.push(failures.length === 0);
  console.log(
    `${failures.length ? "FAIL" : "ok  "}  ${name.padEnd(14)} ${s.padStart(5)} s  ${failures.length ? failures.join("; ") : detail}`,
  );
  return failures.length === 0;
}

let tarball;
let files = [];
try {
  const packed = await check("pack", () => {
    const argv = ["pack", "--json", "--pack-destination", tmp, ...(args["no-build"] ? ["--ignore-scripts"] : [])];
    // prepack's build logs go to stdout ahead of the JSON: take the JSON array at the end.
    const out = sh("npm", argv, { cwd: ROOT });
    const info = JSON.parse(out.slice(out.lastIndexOf("\n[") + 1 || out.indexOf("[")))[0];
    tarball = join(tmp, info.filename);
    files = info.files.map((f) => f.path);
    return {
      detail: `${info.filename}: ${files.length} files, ${(info.size / 1024).toFixed(0)} kB packed, ${(info.unpackedSize / 1024).toFixed(0)} kB unpacked`,
    };
  });

  await check("contents", () => {
    const failures = [];
    const allowed = [
      /^(package\.json|README\.md|LICENSE|CHANGELOG\.md)$/,
      /^dist\/.+\.(js|d\.ts)$/,
      /^build\/wasm-lm\.(simd|relaxed)(-mt)?\.wasm$/,
      /^tokenizers\/opt\/(vocab\.json|merges\.txt|tokenizer_config\.json|special_tokens_map\.json|SOURCE\.txt)$/,
    ];
    const extra = files.filter((f) => !allowed.some((re) => re.test(f)));
    if (extra.length)
      failures.push(`not for users: ${extra.slice(0, 10).join(", ")}${extra.length > 10 ? ` and ${extra.length - 10} more` : ""}`);
    const stale = files.filter(
      (f) => /^dist\/.+\.(js|d\.ts)$/.test(f) && !existsSync(join(ROOT, "src", f.slice(5).replace(/\.(js|d\.ts)$/, ".ts"))),
    );
    if (stale.length) failures.push(`stale build output (no src/*.ts): ${stale.join(", ")}`);
    const needed = [
      "package.json",
      "README.md",
      "LICENSE",
      "CHANGELOG.md",
      "tokenizers/opt/vocab.json",
      "tokenizers/opt/merges.txt",
      ...["simd", "relaxed", "simd-mt", "relaxed-mt"].map((b) => `build/wasm-lm.${b}.wasm`),
      ...Object.values(pkg.bin).map((p) => p.replace(/^\.\//, "")),
    ];
    // Every file "exports" points at (wildcards: at least one match).
    const targets = (v) => (typeof v === "string" ? [v] : v && typeof v === "object" ? Object.values(v).flatMap(targets) : []);
    for (const t of Object.values(pkg.exports).flatMap(targets)) {
      const re = new RegExp(
        `^${t
          .replace(/^\.\//, "")
          .replace(/[.+?^${}()|[\]\\]/g, "\\$&")
          .replace(/\*/g, ".+")}$`,
      );
      if (!files.some((f) => re.test(f))) failures.push(`exports target ${t} is not in the tarball`);
    }
    const missing = needed.filter((f) => !files.includes(f));
    if (missing.length) failures.push(`missing: ${missing.join(", ")}`);
    return {
      failures,
      detail: `${files.filter((f) => f.startsWith("dist/")).length} dist files, ${files.filter((f) => f.startsWith("build/")).length} wasm, nothing else`,
    };
  });

  if (!packed) throw new Error("npm pack failed");

  // An empty project, as a user starts one.
  mkdirSync(app);
  writeFileSync(
    join(app, "package.json"),
    JSON.stringify({ name: "wasm-lm-smoke", version: "1.0.0", private: true, type: "module" }, null, 2),
  );
  const model = join(app, "opt-tiny");
  mkdirSync(model);
  for (const f of ["config.json", "model.safetensors"]) copyFileSync(join(ROOT, "test/fixtures/opt-tiny", f), join(model, f));
  const ref = JSON.parse(readFileSync(join(ROOT, "test/fixtures/opt-tiny/reference.json"), "utf8"));

  const installed = await check("install", () => {
    sh("npm", ["install", tarball, "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"]);
    const v = JSON.parse(readFileSync(join(app, "node_modules/wasm-lm/package.json"), "utf8")).version;
    return { detail: `wasm-lm@${v} and its ${Object.keys(pkg.dependencies).length} dependencies` };
  });
  if (!installed) throw new Error("npm install failed");

  const npx = (argv, opts) => sh("npx", ["--no", "wasm-lm", ...argv], opts);

  await check("cli synthetic", () => {
    const out = npx(["generate", "--prompt", "Hello", "--max-new-tokens", "4"]);
    return { failures: out.trim() ? [] : ["printed nothing"], detail: JSON.stringify(out.trim()).slice(0, 80) };
  });

  await check("cli fixture", () => {
    const r = JSON.parse(
      npx(["generate", "--model", "./opt-tiny", "--ids", ref.input_ids.join(","), "--max-new-tokens", "32", "--ignore-eos", "--json"]),
    );
    const ok = JSON.stringify(r.new_tokens) === JSON.stringify(ref.generation.new_tokens);
    return {
      failures: ok ? [] : [`tokens ${JSON.stringify(r.new_tokens)} ≠ transformers' ${JSON.stringify(ref.generation.new_tokens)}`],
      detail: "32/32 tokens = transformers'",
    };
  });

  await check("cli version", () => {
    // npx takes a bare `--version` for itself (it prints npm's): `npx -- wasm-lm --version`.
    const v = sh("npx", ["--no", "--", "wasm-lm", "--version"]).trim();
    return { failures: v === pkg.version ? [] : [`printed ${JSON.stringify(v)}, package.json says ${pkg.version}`], detail: v };
  });

  await check("cli notice", () => {
    // The default model is synthetic: one line on stderr says its weights are random.
    const r = spawnSync("npx", ["--no", "wasm-lm", "generate", "--prompt", "Hello", "--max-new-tokens", "2"], {
      cwd: app,
      encoding: "utf8",
      timeout: 300_000,
      env: { ...ENV, PATH },
    });
    const lines = (r.stderr ?? "").split("\n").filter((l) => /random weights/.test(l));
    return {
      failures: r.status === 0 && lines.length === 1 ? [] : [`exit ${r.status}, ${lines.length} notice lines: ${JSON.stringify(r.stderr)}`],
      detail: lines[0]?.slice(0, 70),
    };
  });

  await check("cli prompt-file", () => {
    const piped = JSON.parse(npx(["generate", "--prompt-file", "-", "--max-new-tokens", "4", "--json"], { input: "Hello\n" }));
    const given = JSON.parse(npx(["generate", "--prompt", "Hello", "--max-new-tokens", "4", "--json"]));
    const ok = JSON.stringify(piped.new_tokens) === JSON.stringify(given.new_tokens) && piped.new_tokens.length === 4;
    return {
      failures: ok ? [] : [`${JSON.stringify(piped.new_tokens)} ≠ --prompt's ${JSON.stringify(given.new_tokens)}`],
      detail: "echo Hello | … = --prompt Hello",
    };
  });

  await check("cli hf cache", () => {
    // A cache in huggingface_hub's layout (blobs named by hash, a snapshot of relative links, refs/main),
    // read offline: no network, no download.
    const home = join(tmp, "hf-home");
    const repo = join(home, "hub", "models--test-owner--opt-tiny");
    const commit = "0123456789abcdef0123456789abcdef01234567";
    mkdirSync(join(repo, "blobs"), { recursive: true });
    mkdirSync(join(repo, "snapshots", commit), { recursive: true });
    mkdirSync(join(repo, "refs"), { recursive: true });
    writeFileSync(join(repo, "refs", "main"), commit);
    for (const f of ["config.json", "model.safetensors"]) {
      const bytes = readFileSync(join(ROOT, "test/fixtures/opt-tiny", f));
      const blob = createHash("sha256").update(bytes).digest("hex");
      writeFileSync(join(repo, "blobs", blob), bytes);
      symlinkSync(join("..", "..", "blobs", blob), join(repo, "snapshots", commit, f));
    }
    const env = { HF_HOME: home, HF_HUB_OFFLINE: "1", HF_ENDPOINT: "http://127.0.0.1:9" }; // a closed port: any request fails
    const r = JSON.parse(npx(["logits", "--model", "test-owner/opt-tiny", "--ids", ref.input_ids.join(","), "--last", "--json"], { env }));
    const got = r.logits[0];
    const want = ref.logits[ref.logits.length - 1];
    let d = 0;
    for (let i = 0; i < want.length; i++) d = Math.max(d, Math.abs(got[i] - want[i]));
    return { failures: d <= 1e-4 ? [] : [`max|Δlogit| ${d}`], detail: `offline from HF_HOME, max|Δlogit| ${d.toExponential(1)}` };
  });

  await check("cli tokenize", () => {
    const got = npx(["tokenize", "--text-file", "-", "--json"], { input: "hi\n" });
    const want = sh(process.execPath, [join(ROOT, "dist/cli.js"), "tokenize", "--text-file", "-", "--json"], { input: "hi\n" });
    const a = JSON.parse(got).ids;
    return {
      failures: JSON.stringify(a) === JSON.stringify(JSON.parse(want).ids) ? [] : [`ids ${got.trim()} ≠ the repository's ${want.trim()}`],
      detail: `"hi\\n" → ${JSON.stringify(a)}`,
    };
  });

  await check("esm imports", () => {
    writeFileSync(
      join(app, "smoke.mjs"),
      `import { generate } from "wasm-lm";
import { loadModel } from "wasm-lm/node";
import { createHandler, Engine } from "wasm-lm/server";
import { loadKernels } from "wasm-lm/kernels";
import { Arena, loadWasm } from "wasm-lm/internals";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const ids = ${JSON.stringify(ref.input_ids)};
const { model, tokenizer } = await loadModel("./opt-tiny", { threads: 1 });
const r = await generate(model, tokenizer, ids, { maxNewTokens: 8 });
const handler = createHandler({ engine: new Engine(model, { maxBatch: 1 }), tokenizer, modelId: "opt-tiny", eosTokenIds: model.dims.eos });
const res = await handler(new Request("http://localhost/v1/completions", {
  method: "POST", headers: { "content-type": "application/json" },
  body: JSON.stringify({ prompt: ids, max_tokens: 8, temperature: 0, return_token_ids: true }),
}));
const body = await res.json();
const wasm = fileURLToPath(import.meta.resolve("wasm-lm/build/wasm-lm.simd.wasm"));
const k = await loadKernels({ build: "simd" });
const linear = Array.from(k.linear(Float32Array.of(1, 2), Float32Array.of(3, 4, 5, 6), Float32Array.of(0.5, -1), 1, 2, 2));
const arena = new Arena(await loadWasm({ build: "simd" }));
console.log(JSON.stringify({ generate: r.new_tokens, text: r.text, server: body.choices?.[0]?.token_ids, serverText: body.choices?.[0]?.text, wasm: existsSync(wasm),
  linear, arena: arena.alloc(64) > 0 }));
model.dispose();
`,
    );
    const out = JSON.parse(sh(process.execPath, ["smoke.mjs"]));
    const failures = [];
    if (
      JSON.stringify(out.generate) !== JSON.stringify(ref.generation.new_tokens.slice(0, out.generate.length)) ||
      out.generate.length === 0
    ) {
      failures.push(`generate: ${JSON.stringify(out.generate)} ≠ transformers' ${JSON.stringify(ref.generation.new_tokens.slice(0, 8))}`);
    }
    if (JSON.stringify(out.server) !== JSON.stringify(out.generate) || out.serverText !== out.text)
      failures.push(`createHandler: ${JSON.stringify(out.server)} ≠ generate's ${JSON.stringify(out.generate)}`);
    if (!out.wasm) failures.push("wasm-lm/build/wasm-lm.simd.wasm does not resolve to a file");
    if (JSON.stringify(out.linear) !== "[11.5,16]") failures.push(`wasm-lm/kernels linear: ${JSON.stringify(out.linear)} ≠ [11.5,16]`);
    if (!out.arena) failures.push("wasm-lm/internals: Arena over loadWasm() did not allocate");
    return { failures, detail: `generate = createHandler = ${JSON.stringify(out.generate)}; wasm-lm/kernels, wasm-lm/internals` };
  });

  await check("types", () => {
    writeFileSync(
      join(app, "smoke.ts"),
      `import { generate, type GenerateResult } from "wasm-lm";
import { loadModel } from "wasm-lm/node";
import { createHandler, Engine } from "wasm-lm/server";
import { loadKernels, type Kernels } from "wasm-lm/kernels";
import { Arena, type Step } from "wasm-lm/internals";

export async function kernels(): Promise<Float32Array> {
  const k: Kernels = await loadKernels();
  return k.rmsNorm(new Float32Array(4), null, 1, 4, { scalar: true });
}
export const step = (s: Step, a: Arena): number => s.x + a.used;

export async function main(): Promise<GenerateResult> {
  const { model, tokenizer } = await loadModel("synthetic:opt-125m");
  const handler: (r: Request) => Promise<Response> = createHandler({ engine: new Engine(model), tokenizer, modelId: "m", eosTokenIds: model.dims.eos });
  void handler;
  return generate(model, tokenizer!, "Hello", { maxNewTokens: 4 });
}
`,
    );
    sh(join(ROOT, "node_modules/.bin/tsc"), [
      "--noEmit",
      "--strict",
      "--module",
      "nodenext",
      "--moduleResolution",
      "nodenext",
      "--target",
      "es2022",
      "--lib",
      "es2022,dom",
      "--types",
      "node",
      "--typeRoots",
      join(ROOT, "node_modules/@types"),
      "--skipLibCheck",
      "smoke.ts",
    ]);
    return { detail: "tsc --strict, NodeNext: wasm-lm, wasm-lm/node, wasm-lm/server, wasm-lm/kernels, wasm-lm/internals" };
  });
} catch (e) {
  if (results.every(Boolean)) {
    console.log(`FAIL  ${e.message}`);
    results.push(false);
  }
} finally {
  if (args.keep) console.log(`kept ${tmp}`);
  else rmSync(tmp, { recursive: true, force: true });
}

const passed = results.filter(Boolean).length;
console.log(`(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
console.log(`package: ${passed} passed, ${results.length - passed} failed`);
process.exit(passed === results.length ? 0 : 1);
