// `npm run bench`'s output: tables (speed, memory, parity, roofline, targets) or one JSON object per line.
import { syntheticConfig } from "../src/models/families/index.js";
import type { WeightDType } from "../src/models/weights.js";
import type { Bandwidth } from "./bandwidth.js";
import { type ExitInfo, type GraphQuant, type Metric, median, QUANT_PEER, type ReadyInfo, type Sample } from "./model-common.js";
import { ortDecodeBytes, oursDecodeBytes } from "./roofline.js";

/** One configuration: ours (dtype, build, threads) or ORT (graph name as `build`, its weights f32/q8/q4 as `dtype`, threads). */
export interface Config {
  name: string;
  kind: "ours" | "peer";
  dtype: string;
  build: string;
  threads: number;
  samples: Partial<Record<Metric, Sample[]>>;
  ready?: ReadyInfo;
  exit?: ExitInfo;
  /** Why it was not (fully) measured: not available, failed to load, parity failed. */
  status?: string;
}

export interface ParityRow {
  config: string;
  peer: string;
  prefillAll: number;
  last: number;
  decode: number;
  /** Rows whose argmax agrees, "agree/total". */
  top1: string;
  /** ‖a − b‖ / ‖b‖ over every logit compared (b: the peer's). */
  relRms: number;
  ok: boolean;
  /** Whether the 1e-3 tolerance applies (f32); other dtypes are reported only. */
  checked: boolean;
}

export interface RunReport {
  /** The synthetic preset that ran (opt-125m, gpt2, smollm2-135m, …). */
  model: string;
  machine: { date: string; nproc: number; cpu: string; memGiB: number; node: string; v8: string; platform: string; loadavg: string };
  notes: string[];
  repeats: number;
  decodeRepeats: number;
  decodeTokens: number;
  prompt: number;
  seed: number;
  metrics: Metric[];
  configs: Config[];
  parity: ParityRow[];
  peerGraphs: { name: string; ops: string; mib?: number }[];
  wallSeconds: number;
  /** The 1-minute load average after every round (our own active process counts 1 or 2). */
  loadavg: number[];
  /** RSS of a bare node process (no tsx), for the RSS target. */
  plainNodeRssMiB: number | null;
  /** Memory bandwidth measured before and after the timing (bench/bandwidth.ts); empty with --no-bandwidth. */
  bandwidth: ({ when: string } & Bandwidth)[];
  /** --embed-dtype, when given (our lm_head's dtype for the roofline). */
  embedDtype?: string;
}

const sig = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toPrecision(2));
const sci = (x: number) => (Number.isNaN(x) ? "NaN" : x === 0 ? "0" : x.toExponential(1));
const mib = (x: number | undefined) => (x === undefined ? "-" : x.toFixed(0));

function table(header: string[], rows: string[][], rightFrom: number): string {
  const w = header.map((h, j) => Math.max(h.length, ...rows.map((r) => (r[j] ?? "").length)));
  const line = (cells: string[]) => "| " + cells.map((c, j) => (j >= rightFrom ? c.padStart(w[j]) : c.padEnd(w[j]))).join(" | ") + " |";
  const rule = "|" + w.map((n, j) => (j >= rightFrom ? "-".repeat(n + 1) + ":" : "-".repeat(n + 2))).join("|") + "|";
  return [line(header), rule, ...rows.map(line)].join("\n");
}

interface Stat {
  ms: number;
  min: number;
  n: number;
  /** Medians: cores this configuration's process used, cores everything else used meanwhile. */
  cpu: number;
  others: number | null;
}
const stat = (c: Config | undefined, m: Metric): Stat | null => {
  const xs = c?.samples[m];
  if (!xs || !xs.length) return null;
  const ms = xs.map((x) => x.ms);
  const others = xs.map((x) => x.others).filter((x): x is number => x !== null);
  return {
    ms: median(ms),
    min: Math.min(...ms),
    n: xs.length,
    cpu: median(xs.map((x) => x.cpu)),
    others: others.length ? median(others) : null,
  };
};
const busy = (s: Stat | null | undefined) => (s ? `${s.cpu.toFixed(1)}/${s.others === null ? "?" : s.others.toFixed(1)}` : "-");

/** ORT's fastest graph of these weights (f32 unless told) for this metric and thread count (lowest median). */
function bestPeer(r: RunReport, m: Metric, threads: number, weights = "f32"): { cfg: Config; s: Stat } | null {
  let best: { cfg: Config; s: Stat } | null = null;
  for (const cfg of r.configs) {
    if (cfg.kind !== "peer" || cfg.threads !== threads || cfg.dtype !== weights) continue;
    const s = stat(cfg, m);
    if (s && (!best || s.ms < best.s.ms)) best = { cfg, s };
  }
  return best;
}

const ours = (r: RunReport) => r.configs.filter((c) => c.kind === "ours");
const find = (r: RunReport, dtype: string, build: string, threads: number) =>
  r.configs.find((c) => c.kind === "ours" && c.dtype === dtype && c.build === build && c.threads === threads);

/** The ORT graph computing ours' quantization (int8 ~ q8, q4 ~ q4) at the same thread count, or null. */
const quantPeer = (r: RunReport, c: Config, m: Metric) => (QUANT_PEER[c.dtype] ? bestPeer(r, m, c.threads, QUANT_PEER[c.dtype]) : null);
const x2 = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined ? `${(a / b).toFixed(2)}x` : "-");

function speedTable(r: RunReport): string {
  const header = [
    "metric",
    "dtype",
    "build",
    "threads",
    "ours ms",
    "ours min",
    "ORT f32 ms",
    "ours/ORT f32",
    "/ORT f32 1t",
    "ORT quant",
    "ORT quant ms",
    "ours/ORT quant",
    "samples",
    "cores ours",
    "cores ORT",
  ];
  const rows: string[][] = [];
  for (const m of r.metrics) {
    const threads = [...new Set(r.configs.map((c) => c.threads))];
    const one = bestPeer(r, m, 1);
    for (const t of threads) {
      const peer = bestPeer(r, m, t);
      for (const c of ours(r).filter((c) => c.threads === t)) {
        const s = stat(c, m);
        const q = quantPeer(r, c, m);
        const why = c.status?.includes("not available") ? "n/a" : c.status ? "failed" : "-";
        rows.push([
          m,
          c.dtype,
          c.build,
          String(t),
          s ? sig(s.ms) : why,
          s ? sig(s.min) : "-",
          peer ? sig(peer.s.ms) : "-",
          x2(s?.ms, peer?.s.ms),
          x2(s?.ms, one?.s.ms),
          q ? q.cfg.build : "-",
          q ? sig(q.s.ms) : "-",
          x2(s?.ms, q?.s.ms),
          s ? [s.n, peer?.s.n, q?.s.n].filter((n) => n !== undefined).join(" / ") : "-",
          busy(s),
          busy(peer?.s),
        ]);
      }
    }
  }
  return table(header, rows, 4);
}

/** Every ORT graph that ran (the speed table shows only the fastest per metric and thread count). */
function peerTable(r: RunReport): string {
  const peers = r.configs.filter((c) => c.kind === "peer");
  const header = ["ORT graph", "weights", "threads", ...r.metrics.flatMap((m) => [`${m} ms`, `${m} min`, "/f32 1t", "cores"])];
  const rows = peers.map((c) => [
    c.build,
    c.dtype,
    String(c.threads),
    ...r.metrics.flatMap((m) => {
      const s = stat(c, m);
      return s ? [sig(s.ms), sig(s.min), x2(s.ms, bestPeer(r, m, 1)?.s.ms), busy(s)] : [c.status ?? "-", "-", "-", "-"];
    }),
  ]);
  return table(header, rows, 2);
}

function memoryTable(r: RunReport): string {
  const header = [
    "process",
    "peak RSS",
    "peak in load",
    "RSS after load",
    "baseline",
    "weights",
    "KV cache",
    "peak − baseline − weights − KV",
    "load s",
  ];
  const rows = r.configs
    .filter((c) => c.ready)
    .map((c) => {
      const i = c.ready!;
      const peak = c.exit?.peakRssMiB;
      return [
        c.name,
        mib(peak),
        mib(i.peakAfterLoadMiB),
        mib(i.rssAfterLoadMiB),
        mib(i.baselineRssMiB),
        mib(i.weightsMiB),
        mib(i.kvMiB),
        peak === undefined ? "-" : mib(peak - i.baselineRssMiB - i.weightsMiB - i.kvMiB),
        (i.loadMs / 1000).toFixed(1),
      ];
    });
  return table(header, rows, 1);
}

function parityTable(r: RunReport): string {
  const header = ["configuration", "vs ORT", "prefill all rows", "last row", "4 decode steps", "rel RMS", "top-1 agree", "check"];
  const rows = r.parity.map((p) => [
    p.config,
    p.peer,
    sci(p.prefillAll),
    sci(p.last),
    sci(p.decode),
    `${(100 * p.relRms).toPrecision(2)} %`,
    p.top1,
    p.checked ? (p.ok ? "ok (≤ 1e-3)" : "FAIL (> 1e-3)") : p.ok ? "reported only" : "NaN",
  ]);
  return table(header, rows, 2);
}

/** Decode's roofline: bytes per token (./roofline.ts) over the best read bandwidth measured, next to what ran. */
export function roofline(r: RunReport): {
  what: string;
  weightsMB: number;
  kvMB: number;
  bound1: number | null;
  bound2: number | null;
  measured1: { ms: number; build: string } | null;
  measured2: { ms: number; build: string } | null;
}[] {
  const bw1 = Math.max(0, ...r.bandwidth.map((b) => b.read1Best));
  const bw2 = Math.max(0, ...r.bandwidth.map((b) => b.read2Best ?? 0));
  const config = syntheticConfig(r.model);
  const ctx = r.prompt + (r.decodeTokens + 1) / 2; // the mean context over the timed steps
  /** The fastest configuration's decode median among these, at t threads. */
  const fastest = (cs: Config[], t: number) =>
    cs
      .filter((c) => c.threads === t)
      .map((c) => ({ ms: stat(c, "decode")?.ms, build: c.kind === "ours" ? c.build : c.build.replace(/^q\d /, "") }))
      .filter((x): x is { ms: number; build: string } => x.ms !== undefined)
      .sort((a, b) => a.ms - b.ms)[0] ?? null;
  const rows = [];
  const emb = r.embedDtype as WeightDType | undefined;
  for (const dtype of [...new Set(ours(r).map((c) => c.dtype))]) {
    const b = oursDecodeBytes(config, dtype as WeightDType, emb, ctx);
    const cs = ours(r).filter((c) => c.dtype === dtype);
    rows.push({ what: `ours ${dtype}${emb ? ` (lm_head ${emb})` : ""}`, b, cs });
  }
  for (const w of [...new Set(r.configs.filter((c) => c.kind === "peer").map((c) => c.dtype))]) {
    const cs = r.configs.filter((c) => c.kind === "peer" && c.dtype === w);
    rows.push({ what: `ORT ${w}`, b: ortDecodeBytes(config, w as GraphQuant["weights"], ctx), cs });
  }
  return rows.map(({ what, b, cs }) => {
    const bytes = b.weights + b.kv;
    return {
      what,
      weightsMB: b.weights / 1e6,
      kvMB: b.kv / 1e6,
      bound1: bw1 ? (bytes / 1e9 / bw1) * 1000 : null,
      bound2: bw2 ? (bytes / 1e9 / bw2) * 1000 : null,
      measured1: fastest(cs, 1),
      measured2: fastest(cs, 2),
    };
  });
}

function rooflineTable(r: RunReport): string {
  const ms = (x: number | null) => (x === null ? "-" : sig(x));
  const meas = (m: { ms: number; build: string } | null) => (m ? `${sig(m.ms)} (${m.build})` : "-");
  const pct = (bound: number | null, m: { ms: number } | null) => (bound !== null && m ? `${Math.round((100 * bound) / m.ms)} %` : "-");
  const rows = roofline(r).map((x) => [
    x.what,
    x.weightsMB.toFixed(1),
    x.kvMB.toFixed(1),
    (x.weightsMB + x.kvMB).toFixed(1),
    ms(x.bound1),
    meas(x.measured1),
    pct(x.bound1, x.measured1),
    ms(x.bound2),
    meas(x.measured2),
    pct(x.bound2, x.measured2),
  ]);
  return table(
    [
      "decode",
      "weights MB/token",
      "KV MB/token",
      "total MB",
      "bound 1t ms",
      "measured 1t ms",
      "bound/measured",
      "bound 2t ms",
      "measured 2t ms",
      "bound/measured",
    ],
    rows,
    1,
  );
}

interface Target {
  target: string;
  config: string;
  /** From medians (what the status judges) … */
  measured: string;
  met: boolean | null;
  /** … and from each side's best sample: what the machine gives when nothing else runs. */
  best: string;
  met_best: boolean | null;
}

type Pick = "ms" | "min";

/** The issues' targets for the model that ran, each against what this run measured ("not measured" when it did not). */
export function targets(r: RunReport): Target[] {
  const out: Target[] = [];
  const add = (
    target: string,
    config: string,
    value: (p: Pick) => number | null,
    fmt: (v: number) => string,
    ok: (v: number) => boolean,
  ) => {
    const [v, b] = [value("ms"), value("min")];
    out.push({
      target,
      config,
      measured: v === null ? "not measured" : fmt(v),
      met: v === null ? null : ok(v),
      best: b === null ? "-" : fmt(b),
      met_best: b === null ? null : ok(b),
    });
  };
  const ms = (m: Metric, c: Config | undefined) => (p: Pick) => stat(c, m)?.[p] ?? null;
  const ratio = (m: Metric, c: Config | undefined) => (p: Pick) => {
    const s = stat(c, m);
    const peer = c && bestPeer(r, m, c.threads);
    return s && peer ? s[p] / peer.s[p] : null;
  };
  /** Against ORT f32 on one thread, whatever c's thread count (the 4-bit issue's yardstick). */
  const ratio1t = (m: Metric, c: Config | undefined) => (p: Pick) => {
    const s = stat(c, m);
    const peer = bestPeer(r, m, 1);
    return s && peer ? s[p] / peer.s[p] : null;
  };
  const x = (v: number) => `${v.toFixed(2)}x ORT`;
  const msf = (v: number) => `${sig(v)} ms`;
  if (r.model === "smollm2-135m") {
    // The multi-family issue's targets (1 thread, decode, against ORT-Web f32 on the same weights).
    for (const [dtype, max] of [
      ["f32", 0.7],
      ["int8", 0.4],
    ] as const) {
      for (const b of ["simd", "relaxed"]) {
        add(`decode ${dtype}, 1 thread ≤ ${max}x ORT f32`, `${dtype} ${b} 1t`, ratio("decode", find(r, dtype, b, 1)), x, (v) => v <= max);
      }
    }
  }
  if (r.model === "opt-125m") optTargets(r, add, ms, ratio, x, msf);
  q4Targets(r, add, ms, ratio1t, x, msf);
  rssTargets(r, add);
  return out;
}

type Add = (
  target: string,
  config: string,
  value: (p: Pick) => number | null,
  fmt: (v: number) => string,
  ok: (v: number) => boolean,
) => void;
type Value = (m: Metric, c: Config | undefined) => (p: Pick) => number | null;

/** The OPT-125M speed issue's targets. */
function optTargets(r: RunReport, add: Add, ms: Value, ratio: Value, x: (v: number) => string, msf: (v: number) => string): void {
  for (const b of ["simd", "relaxed"]) {
    add("decode f32, 1 thread ≤ 0.65x ORT", `f32 ${b} 1t`, ratio("decode", find(r, "f32", b, 1)), x, (v) => v <= 0.65);
  }
  for (const b of ["simd", "relaxed"]) {
    add("decode f32, 2 threads ≤ 21 ms/token", `f32 ${b} 2t`, ms("decode", find(r, "f32", b, 2)), msf, (v) => v <= 21);
  }
  for (const b of ["simd", "relaxed"]) {
    add("decode int8, 1 thread ≤ 12 ms/token", `int8 ${b} 1t`, ms("decode", find(r, "int8", b, 1)), msf, (v) => v <= 12);
  }
  add(
    "prefill-128 all logits, 1 thread ≤ 0.6x ORT (relaxed)",
    "f32 relaxed 1t",
    ratio("prefill", find(r, "f32", "relaxed", 1)),
    x,
    (v) => v <= 0.6,
  );
  add("prefill-128 all logits, 1 thread ≤ 0.8x ORT (simd)", "f32 simd 1t", ratio("prefill", find(r, "f32", "simd", 1)), x, (v) => v <= 0.8);
  for (const t of [1, 2]) {
    add("TTFT ≤ 450 ms (relaxed)", `f32 relaxed ${t}t`, ms("ttft", find(r, "f32", "relaxed", t)), msf, (v) => v <= 450);
  }
  for (const b of ["simd", "relaxed"]) {
    for (const m of r.metrics) {
      const one = ms(m, find(r, "f32", b, 1));
      const two = ms(m, find(r, "f32", b, 2));
      add(
        `2 threads ≥ 1.8x faster than 1 (${m})`,
        `f32 ${b}`,
        (p) => {
          const [a, c] = [one(p), two(p)];
          return a !== null && c !== null ? a / c : null;
        },
        (v) => `${v.toFixed(2)}x`,
        (v) => v >= 1.8,
      );
    }
  }
}

/** The 4-bit issue's targets (decode, ratios against ORT-Web f32 on one thread). */
function q4Targets(r: RunReport, add: Add, ms: Value, ratio1t: Value, x: (v: number) => string, msf: (v: number) => string): void {
  const builds = ["simd", "relaxed"];
  if (r.model === "opt-125m") {
    for (const b of builds) add("decode q4, 1 thread ≤ 6 ms/token", `q4 ${b} 1t`, ms("decode", find(r, "q4", b, 1)), msf, (v) => v <= 6);
    for (const b of builds)
      add("decode q4, 1 thread ≤ 0.15x ORT f32 1t", `q4 ${b} 1t`, ratio1t("decode", find(r, "q4", b, 1)), x, (v) => v <= 0.15);
    for (const b of builds) add("decode q4, 2 threads ≤ 4 ms/token", `q4 ${b} 2t`, ms("decode", find(r, "q4", b, 2)), msf, (v) => v <= 4);
    for (const b of builds)
      add("decode q4, 2 threads ≤ 0.10x ORT f32 1t", `q4 ${b} 2t`, ratio1t("decode", find(r, "q4", b, 2)), x, (v) => v <= 0.1);
    for (const b of builds)
      add("decode int8, 2 threads ≤ 5.5 ms/token", `int8 ${b} 2t`, ms("decode", find(r, "int8", b, 2)), msf, (v) => v <= 5.5);
  }
  if (r.model === "smollm2-135m") {
    for (const b of builds) add("decode q4, 1 thread ≤ 7 ms/token", `q4 ${b} 1t`, ms("decode", find(r, "q4", b, 1)), msf, (v) => v <= 7);
  }
}

function rssTargets(r: RunReport, add: Add): void {
  // Judged on the process as a library user runs it: plain node. Our workers run under tsx, whose
  // loader adds ~35 MiB to the baseline; that difference is taken out (and the raw peak shown).
  for (const c of ours(r).filter((c) => c.dtype === "f32" && c.ready && c.exit)) {
    const budget = c.ready!.weightsMiB + c.ready!.kvMiB + 120;
    const raw = c.exit!.peakRssMiB;
    const tsx = r.plainNodeRssMiB === null ? 0 : Math.max(0, c.ready!.baselineRssMiB - r.plainNodeRssMiB);
    add(
      "peak RSS f32 ≤ weights + KV cache + 120 MiB",
      `${c.build} ${c.threads}t (budget ${budget.toFixed(0)} MiB)`,
      () => raw - tsx,
      (v) => `${v.toFixed(0)} MiB (raw ${raw.toFixed(0)}, tsx −${tsx.toFixed(0)})`,
      (v) => v <= budget,
    );
  }
}

function targetTable(r: RunReport): string {
  const st = (m: boolean | null) => (m === null ? "-" : m ? "met" : "NOT met");
  const rows = targets(r).map((t) => [t.target, t.config, t.measured, st(t.met), t.best, st(t.met_best)]);
  return table(["target", "configuration", "from medians", "status", "from best samples", "status"], rows, 2);
}

function header(r: RunReport): string[] {
  const m = r.machine;
  return [
    `wasm-lm model bench — ${m.date}`,
    `machine: ${m.nproc} cores, ${m.cpu}, ${m.memGiB.toFixed(0)} GiB, node ${m.node} (V8 ${m.v8}), ${m.platform}, load average ${m.loadavg} at start`,
    `model: synthetic ${r.model} (seed ${r.seed}), prompt ${r.prompt} tokens, decode ${r.decodeTokens} tokens after it`,
    `timing: medians over ${r.repeats} samples (ttft, prefill) and ${r.decodeRepeats} decode loops per configuration, ` +
      `configurations interleaved round by round, each in its own process`,
    ...(r.loadavg.length
      ? [
          `load average (1 min) after each round: ${Math.min(...r.loadavg).toFixed(2)} – ` +
            `${Math.max(...r.loadavg).toFixed(2)} (the running configuration itself counts 1 or 2)`,
        ]
      : []),
    ...(r.plainNodeRssMiB !== null ? [`bare node RSS: ${r.plainNodeRssMiB.toFixed(0)} MiB (workers run under tsx: see "baseline")`] : []),
    ...r.bandwidth.map(
      (b) =>
        `memory bandwidth (${b.when}, ${b.mib} MiB, medians of ${b.repeats} / best): read ${b.read1.toFixed(1)} / ` +
        `${b.read1Best.toFixed(1)} GB/s on 1 thread, ${b.read2?.toFixed(1) ?? "-"} / ${b.read2Best?.toFixed(1) ?? "-"} GB/s on 2; ` +
        `copy ${b.copy1.toFixed(1)} GB/s (read + written, 1 thread)`,
    ),
    ...r.notes,
    ...r.peerGraphs.map((g) => `ORT graph ${g.name}${g.mib !== undefined ? ` (${g.mib.toFixed(0)} MiB)` : ""}: ${g.ops}`),
  ];
}

export function report(r: RunReport, json: boolean): string {
  if (json) {
    const lines: string[] = [];
    for (const c of r.configs) {
      for (const m of r.metrics) {
        const s = stat(c, m);
        const peer = bestPeer(r, m, c.threads);
        const isOurs = c.kind === "ours";
        const par = r.parity.filter((p) => p.config === c.name);
        lines.push(
          JSON.stringify({
            metric: m,
            model: r.model,
            unit: m === "decode" ? "ms/token" : "ms",
            engine: isOurs ? "wasm-lm" : "onnxruntime-web",
            dtype: c.dtype,
            threads: c.threads,
            build: c.build,
            status: c.status ?? (s ? "ok" : "not measured"),
            ms: s?.ms ?? null,
            ms_min: s?.min ?? null,
            samples: s?.n ?? 0,
            peer_variant: isOurs ? (peer?.cfg.build ?? null) : null,
            ratio_f32_1t: s && bestPeer(r, m, 1) ? s.ms / bestPeer(r, m, 1)!.s.ms : null,
            quant_peer_variant: isOurs ? (quantPeer(r, c, m)?.cfg.build ?? null) : null,
            quant_peer_ms: isOurs ? (quantPeer(r, c, m)?.s.ms ?? null) : null,
            ratio_quant: isOurs && s && quantPeer(r, c, m) ? s.ms / quantPeer(r, c, m)!.s.ms : null,
            peer_ms: isOurs ? (peer?.s.ms ?? null) : null,
            peer_ms_min: isOurs ? (peer?.s.min ?? null) : null,
            ratio: isOurs && s && peer ? s.ms / peer.s.ms : null,
            ratio_min: isOurs && s && peer ? s.min / peer.s.min : null,
            cores: s?.cpu ?? null,
            others_cores: s?.others ?? null,
            samples_ms: c.samples[m]?.map((x) => x.ms) ?? [],
            peak_rss_mb: c.exit?.peakRssMiB ?? null,
            peer_peak_rss_mb: isOurs ? (peer?.cfg.exit?.peakRssMiB ?? null) : null,
            baseline_rss_mb: c.ready?.baselineRssMiB ?? null,
            weights_mb: c.ready?.weightsMiB ?? null,
            kv_mb: c.ready?.kvMiB ?? null,
            load_ms: c.ready?.loadMs ?? null,
            parity_max_abs_diff: par.length ? Math.max(...par.map((p) => Math.max(p.prefillAll, p.last, p.decode))) : null,
            parity: par.map((p) => ({
              vs: p.peer,
              max_abs_diff: Math.max(p.prefillAll, p.last, p.decode),
              rel_rms: p.relRms,
              top1: p.top1,
            })),
            prompt: r.prompt,
            decode_tokens: r.decodeTokens,
            date: r.machine.date,
          }),
        );
      }
    }
    for (const t of targets(r)) lines.push(JSON.stringify({ metric: "target", model: r.model, ...t }));
    for (const x of roofline(r)) lines.push(JSON.stringify({ metric: "roofline", model: r.model, ...x }));
    for (const b of r.bandwidth) lines.push(JSON.stringify({ metric: "bandwidth", unit: "GB/s", ...b }));
    process.stderr.write(header(r).join("\n") + "\n");
    return lines.join("\n") + "\n";
  }
  const parts = [
    header(r).join("\n"),
    "",
    "Speed: medians and mins in ms (decode: ms per token); ours/ORT f32 = our median / the median of ORT's fastest f32 graph at the",
    "same thread count (< 1: we are faster); /ORT f32 1t: the same against ORT f32 on one thread; ORT quant: the ORT graph of our",
    "quantization (int8 ~ q8: MatMulInteger, q4 ~ q4: MatMulNBits) at the same thread count. samples: ours / ORT f32 / ORT quant.",
    "cores: median CPU cores the process used during its samples / cores used by everything else meanwhile (> 0.2: contended).",
    `TTFT: a ${r.prompt}-token prefill computing the lm_head for the last row only, plus the argmax; prefill: the same`,
    `prefill with logits for all ${r.prompt} rows; decode: ${r.decodeTokens} greedy tokens after a ${r.prompt}-token prefill, ` +
      "per token. ORT f32: its fastest f32 graph per row (all graphs below).",
    "",
    speedTable(r),
  ];
  const skipped = r.configs.filter((c) => c.status);
  if (skipped.length) parts.push("", ...skipped.map((c) => `${c.name}: ${c.status}`));
  if (r.configs.some((c) => c.kind === "peer")) parts.push("", "ORT, every graph that ran:", "", peerTable(r));
  parts.push(
    "",
    "Memory (MiB; peak = VmHWM of the configuration's own process; baseline = node + tsx before anything loaded):",
    "",
    memoryTable(r),
  );
  if (r.parity.length) {
    parts.push(
      "",
      "Parity of the logits before timing: max |Δ|, rel RMS = ‖a − b‖ / ‖b‖ over all compared logits (b: the ORT graph's), top-1 agreement.",
      "Ours f32 vs ORT f32 must be ≤ 1e-3; the rest is reported: ours vs every f32 graph and vs the graph of our quantization, each",
      "quantized ORT graph vs ORT f32.",
      "",
      parityTable(r),
    );
  }
  if (r.bandwidth.length) {
    const b = r.bandwidth;
    parts.push(
      "",
      `Decode roofline: bytes every token must read (weights + f32 KV cache at the mean context ${r.prompt + (r.decodeTokens + 1) / 2}) ` +
        `over the best read bandwidth measured (${Math.max(...b.map((x) => x.read1Best)).toFixed(1)} GB/s on 1 thread, ` +
        `${Math.max(...b.map((x) => x.read2Best ?? 0)).toFixed(1)} on 2: best samples): a lower bound on ms/token; measured: the fastest ` +
        "configuration's median.",
      "",
      rooflineTable(r),
    );
  }
  parts.push(
    "",
    "Targets (the issues' targets for this model): status from the medians; \"best samples\" uses each side's min " +
      "(ratios: min / min) — the machine with nothing else running.",
    "",
    targetTable(r),
    "",
    `wall time ${(r.wallSeconds / 60).toFixed(1)} min`,
    "",
  );
  return parts.join("\n");
}
