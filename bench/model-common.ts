// What bench/model.ts (the parent) and bench/model-worker.ts (one configuration per child process)
// share: the worker's spec, the messages between them, the inputs, and small helpers.
import { readFileSync } from "node:fs";

export type Metric = "ttft" | "prefill" | "decode";
export const METRICS: readonly Metric[] = ["ttft", "prefill", "decode"];
export const METRIC_LABEL: Record<Metric, string> = {
  ttft: "TTFT: prefill, last-row logits, argmax",
  prefill: "prefill, logits for all rows",
  decode: "decode, ms per token",
};

/** Our model in one configuration, ORT on one exported graph, or the exporter itself. */
export type WorkerSpec =
  | ({
      kind: "ours";
      build: "simd" | "relaxed";
      dtype: string;
      passDtype: boolean;
      passThreads: boolean;
      /** LoadOptions.embedDType (the token embedding's and tied lm_head's dtype); absent: the model's default. */
      embedDType?: string;
    } & Common)
  | ({ kind: "peer"; onnxPath: string; variant: string } & Common)
  | ({ kind: "export"; model: string; seed: number; variant: string; lmHead: string; onnxPath: string } & GraphQuant);

/** Our quantized dtype → the ORT graph computing the same model the transformers.js way (int8 ~ q8, q4 ~ q4). */
export const QUANT_PEER: Readonly<Record<string, "q8" | "q4" | undefined>> = { int8: "q8", q4: "q4" };

/** How a peer graph holds its weights (bench/decoder-onnx.ts' options of the same names). */
export interface GraphQuant {
  /** f32, q8 (quantize_dynamic) or q4 (MatMulNBits). */
  weights: "f32" | "q8" | "q4";
  q8PerChannel?: boolean;
  q4Symmetric?: boolean;
  q4AccuracyLevel?: number;
}

interface Common {
  /** The synthetic preset (src/models/families: opt-125m, gpt2, smollm2-135m, …). */
  model: string;
  /** Where the worker writes its parity logits (IPC would copy 25 MB through the worker's heap). */
  tmpDir: string;
  threads: number;
  seed: number;
  /** Prompt length T and the KV cache's capacity (T + decode tokens). */
  promptLen: number;
  maxCtx: number;
}

export type Request = { cmd: "parity"; decodeIds: number[] } | { cmd: Metric; tokens?: number } | { cmd: "exit" };

/** The parity logits, written by the worker as one file: all (T·V), last (V), decode (K·V) f32. */
export interface ParityResult {
  /** (T, V): prefill with logits for every row. */
  all: Float32Array;
  /** (V): a first-token prefill's last row. */
  last: Float32Array;
  /** One (V) per teacher-forced decode step after that prefill. */
  decode: Float32Array[];
}

export interface ReadyInfo {
  describe: string;
  loadMs: number;
  /** RSS when the worker started, before the model or ORT was imported (Node + tsx alone). */
  baselineRssMiB: number;
  rssAfterLoadMiB: number;
  /** VmHWM once loaded: the peak of loading itself. */
  peakAfterLoadMiB: number;
  /** Ours: arena bytes of weights; peer: the .onnx file (initializers). */
  weightsMiB: number;
  kvMiB: number;
  /** Threads the configuration really runs on (ours: model.threads). */
  threads: number;
}

export interface ExitInfo {
  /** VmHWM from /proc/self/status (the peak resident set), else getrusage's maxRSS. */
  peakRssMiB: number;
  rssMiB: number;
}

/** One timed sample, and how busy the machine was meanwhile. */
export interface Sample {
  ms: number;
  /** CPU time of this process (all its threads) / wall time: cores it got. */
  cpu: number;
  /** CPU time of everything else on the machine (from /proc/stat) / wall time: cores taken by others. */
  others: number | null;
}

export type Reply =
  | { type: "ready"; info: ReadyInfo }
  | { type: "result"; sample?: Sample; parityFile?: string }
  | { type: "exit"; info: ExitInfo }
  | { type: "error"; message: string };

/** A fixed prompt: token ids from a seeded LCG, in [3, V) (no pad/bos/eos ids). */
export function promptIds(seed: number, T: number, V: number): number[] {
  let s = (seed * 2654435761 + 12345) >>> 0;
  return Array.from({ length: T }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return 3 + (s % (V - 3));
  });
}

export function argmax(a: Float32Array): number {
  let best = 0;
  let m = a[0];
  for (let i = 1; i < a.length; i++) {
    if (a[i] > m) {
      m = a[i];
      best = i;
    }
  }
  return best;
}

const MiB = 2 ** 20;

export function rssMiB(): number {
  return process.memoryUsage().rss / MiB;
}

export function peakRssMiB(): number {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) / 1024;
  } catch {
    /* not Linux */
  }
  return process.resourceUsage().maxRSS / 1024;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Busy CPU seconds of the whole machine so far (all cores), from /proc/stat; null elsewhere. */
export function machineBusySeconds(): number | null {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal …: busy = all but idle and iowait (USER_HZ = 100).
    const busy = f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0);
    return busy / 100;
  } catch {
    return null;
  }
}
