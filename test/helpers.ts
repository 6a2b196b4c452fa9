// Shared by the model tests: fixture paths, the builds this runtime runs, and max-abs-diff checks.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { detectFeatures, type Build } from "../src/wasm.js";
import { CheckpointError, type AsyncTensorSource, type TensorSource } from "../src/formats/index.js";

export const FIXTURE_DIR = fileURLToPath(new URL("./fixtures/opt-tiny/", import.meta.url));
export const TOKENIZER_FIXTURE_DIR = fileURLToPath(new URL("./fixtures/opt-tokenizer/", import.meta.url));
export const reference = () => JSON.parse(readFileSync(FIXTURE_DIR + "reference.json", "utf8"));

/** Every build this runtime can run (vitest runs Node with --experimental-wasm-relaxed-simd). */
export const BUILDS: Build[] = detectFeatures().relaxedSimd ? ["simd", "relaxed"] : ["simd"];

/** Max |a - b| over two flat sequences, with where it happened. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): { max: number; at: number } {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let max = 0;
  let at = -1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) return { max: Infinity, at: i };
    if (d > max) {
      max = d;
      at = i;
    }
  }
  return { max, at };
}

export const flat = (rows: number[][]): number[] => rows.flat();

/**
 * Largest violation of |ours − ref| ≤ atol + rtol·|ref| (≤ 1 passes), with the max abs diff and
 * the worst index for the message. Large-magnitude tensors (the final LayerNorm output reaches
 * ~450 in the fixture) need the relative term; small ones are held to atol.
 */
export function closeness(ours: ArrayLike<number>, ref: ArrayLike<number>, atol: number, rtol: number) {
  if (ours.length !== ref.length) throw new Error(`length ${ours.length} vs ${ref.length}`);
  let worst = 0;
  let at = -1;
  let maxAbs = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(ours[i] - ref[i]);
    const r = Number.isNaN(d) ? Infinity : d / (atol + rtol * Math.abs(ref[i]));
    if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? Infinity : d;
    if (r > worst) {
      worst = r;
      at = i;
    }
  }
  return {
    ratio: worst,
    maxAbs,
    at,
    message: at < 0 ? "exact" : `worst at ${at}: ours ${ours[at]}, ref ${ref[at]}, max|Δ| ${maxAbs.toExponential(2)}`,
  };
}

/** An AsyncTensorSource over a file in memory: every read is a promise, counted, and may fail. */
export function asyncSource(inner: TensorSource) {
  const stats = { reads: 0, bytes: 0, failOn: null as string | null };
  const read = async (name: string, off = 0, len?: number) => {
    await new Promise((r) => setTimeout(r, 0));
    if (name === stats.failOn) throw new CheckpointError(`remote.safetensors: tensor '${name}': connection reset (injected)`);
    const raw = inner.readRaw(name);
    const out = raw.slice(off, len === undefined ? undefined : off + len);
    stats.bytes += out.length;
    return out;
  };
  const source: AsyncTensorSource = {
    tensors: () => inner.tensors(),
    get: (n) => inner.get(n),
    readRawAsync: async (n, off, len) => {
      stats.reads++;
      return read(n, off, len);
    },
    readRawMany: async (names) => {
      stats.reads++; // one request for a whole layer, as the HTTP reader coalesces adjacent tensors
      const out = new Map<string, Uint8Array>();
      for (const n of names) out.set(n, await read(n));
      return out;
    },
  };
  return { source, stats };
}
