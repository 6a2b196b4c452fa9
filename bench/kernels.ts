// npm run bench:kernels [-- --json] [--only linear] [--repeats 7] ...
//
// Our kernels (both wasm builds) against ONNX Runtime Web's WASM backend on OPT-125M's shapes,
// one thread each, in the same run. See bench/README.md for how to read the output.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError, Option } from "commander";
import { Arena } from "../src/arena.js";
import { type Build, loadWasm, type Wasm, wasmUrl } from "../src/wasm.js";
import { allCases, type Ctx, type Kernel, type Ours } from "./cases.js";
import { machineInfo, measure, runMain, type MeasureOptions } from "./measure.js";
import { createSession, describeOrt, f32Tensor, initOrt, runOne, tinyAddGraph } from "./ort.js";
import { detailTable, jsonLines, progressLine, summaryTable } from "./report.js";
import { type CaseResult, runCase } from "./runner.js";

const KERNELS: Kernel[] = ["linear", "linearF16", "linearI8", "layerNorm", "softmax"];
const BUILDS: Build[] = ["simd", "relaxed"];

const int = (name: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
  return n;
};
const positive = (v: string) => {
  const n = Number(v);
  if (!(n > 0)) throw new InvalidArgumentError("must be a positive number");
  return n;
};
const listOf = <T extends string>(allowed: readonly T[]) => (v: string): T[] =>
  v.split(",").map((s) => {
    const hit = allowed.find((a) => a.toLowerCase() === s.trim().toLowerCase());
    if (!hit) throw new InvalidArgumentError(`'${s}' is not one of ${allowed.join(", ")}`);
    return hit;
  });

const program = new Command("bench:kernels")
  .description("wasm-lm kernels vs onnxruntime-web (wasm, 1 thread) on OPT-125M shapes")
  .option("--json", "one JSON object per line per (case, build) on stdout", false)
  .option("--only <kernels>", `comma list of ${KERNELS.join(", ")}`, listOf(KERNELS))
  .option("--filter <text>", "only cases whose shape contains this text (e.g. 50272, T=1)")
  .addOption(new Option("--builds <list>", "our builds to run").argParser(listOf(BUILDS)).default(BUILDS, "simd,relaxed"))
  .option("--no-peer", "skip onnxruntime-web")
  .option("--repeats <n>", "samples per contender, at least", int("--repeats", 1), 7)
  .option("--warmup <n>", "warm-up calls per contender", int("--warmup", 1), 2)
  .option("--max-seconds <s>", "time budget per case; stops after 3 samples once spent", positive, 20)
  .option("--sample-ms <ms>", "one sample batches calls up to about this long", positive, 20)
  .option("--build-dir <dir>", "read wasm-lm.{simd,relaxed}.wasm from here instead of build/")
  .option("--seed <n>", "seed of every input", int("--seed", 0), 1);

interface Opts {
  json: boolean;
  only?: Kernel[];
  filter?: string;
  builds: Build[];
  peer: boolean;
  repeats: number;
  warmup: number;
  maxSeconds: number;
  sampleMs: number;
  buildDir?: string;
  seed: number;
}

/** A build without heapBase (the kernels not landed yet) still gets an arena, far above its data. */
const FALLBACK_HEAP_BASE = 1 << 20;

/**
 * Load one build from its file. The bytes are validated here rather than through detectFeatures():
 * "can this runtime compile this very file" is the question, and loadWasm skips its own probe when
 * handed the bytes. Null (with a note) when the runtime cannot run the build.
 */
async function loadOurs(build: Build, buildDir: string | undefined, log: (m: string) => void): Promise<Ours | null> {
  const file = buildDir ? path.join(buildDir, `wasm-lm.${build}.wasm`) : fileURLToPath(wasmUrl(build));
  const bytes = readFileSync(file);
  if (!WebAssembly.validate(bytes)) {
    log(`note: this runtime cannot compile ${file}` + (build === "relaxed"
      ? " (relaxed SIMD: Node 20 needs --experimental-wasm-relaxed-simd, which `npm run bench:kernels` passes)" : "") +
      `: skipping the ${build} build`);
    return null;
  }
  let wasm: Wasm = await loadWasm({ build, bytes });
  if (typeof wasm.k.heapBase !== "function") {
    log(`note: ${file} exports no heapBase; the arena starts at ${FALLBACK_HEAP_BASE} instead`);
    wasm = { ...wasm, k: { ...wasm.k, heapBase: () => FALLBACK_HEAP_BASE } };
  }
  return { build, file: path.relative(process.cwd(), file) || file, k: wasm.k, arena: new Arena(wasm) };
}

async function main(): Promise<number> {
  const o = program.parse().opts<Opts>();
  const out = (s: string) => process.stdout.write(s + "\n");
  const log = (s: string) => process.stderr.write(s + "\n");

  const ours: Ours[] = [];
  for (const b of o.builds) {
    const loaded = await loadOurs(b, o.buildDir, log);
    if (loaded) ours.push(loaded);
  }
  const builds = ours.map((x) => x.build);

  let peerName = "none";
  if (o.peer) {
    await initOrt();
    peerName = describeOrt();
  }
  const m = machineInfo();
  const mopts: MeasureOptions = { repeats: o.repeats, warmup: o.warmup, maxSeconds: o.maxSeconds, sampleMs: o.sampleMs };
  const header = [
    `wasm-lm kernel bench — ${m.date}`,
    `machine: ${m.nproc} cores, ${m.cpu}, node ${m.node} (V8 ${m.v8}), ${m.platform}, load average ${m.loadavg}`,
    `ours: builds ${builds.join(", ") || "none"} (${o.buildDir ?? "build/"}), 1 thread`,
    `peer: ${peerName}`,
    `timing: medians over >= ${o.repeats} samples per contender (>= 3 once ${o.maxSeconds} s per case are spent), ` +
      `${o.warmup} warm-up calls, samples of ~${o.sampleMs} ms, contenders interleaved; seed ${o.seed}`,
  ];
  (o.json ? log : out)(header.join("\n"));

  if (o.peer) {
    // What one session.run costs with nothing to compute: part of every peer time below.
    const s = await createSession(tinyAddGraph());
    const x = f32Tensor(new Float32Array([1]), [1]);
    const [t] = await measure([{ name: "overhead", run: () => runOne(s, { x }) }], mopts);
    await s.release();
    (o.json ? log : out)(`peer call overhead (1-element Add graph): ${(t.ms * 1000).toFixed(1)} µs median per session.run`);
  }

  const ctx: Ctx = {
    ours,
    peer: o.peer,
    seed: o.seed,
    wants: (kernel, shape) => (!o.only || o.only.includes(kernel)) && (!o.filter || shape.includes(o.filter)),
    log,
  };
  const results: CaseResult[] = [];
  let failed = false;
  for await (const spec of allCases(ctx)) {
    const r = await runCase(spec, mopts);
    results.push(r);
    log(progressLine(r));
    for (const x of r.ours.filter((x) => x.status === "wrong")) {
      failed = true;
      const c = x.vsRef && !x.vsRef.ok ? ["f64 reference", x.vsRef] as const : ["ORT", x.vsPeer!] as const;
      log(`  WRONG: ${x.build} ${r.kernel} ${r.shape} vs ${c[0]}: max|Δ| ${c[1].maxAbs}, worst at ${c[1].at}: ` +
        `got ${c[1].got}, want ${c[1].want} (atol ${r.tol.atol}, rtol ${r.tol.rtol}); not timed`);
    }
    for (const p of r.peers.filter((p) => !p.vsRef.ok)) {
      failed = true;
      log(`  WRONG: ORT ${p.variant} ${r.kernel} ${r.shape} vs f64 reference: max|Δ| ${p.vsRef.maxAbs} ` +
        `at ${p.vsRef.at} (the ONNX graph is wrong); not timed`);
    }
    if (o.json) for (const line of jsonLines(r, peerName)) out(line);
  }
  if (results.length === 0) log("no case matches --only/--filter");

  if (!o.json && results.length) {
    out("\nThroughput, medians (GFLOP/s or GB/s; ratio = ours / ORT's fastest variant, > 1: we are faster)\n");
    out(summaryTable(results, builds));
    out("\nEvery contender: ms per kernel call (median, min), samples × runs per sample, rate in the case's unit," +
      "\nmax |Δ| of the output vs ORT's single-node output and vs a float64 reference (* = ORT's fastest variant)\n");
    out(detailTable(results));
    const missing = [...new Set(results.flatMap((r) => r.ours.filter((x) => x.status === "missing").map((x) => x.note)))];
    if (missing.length) out(`\nmissing kernels (not timed): ${missing.join("; ")}`);
  }
  return failed ? 1 : 0;
}

runMain("bench:kernels", main);
