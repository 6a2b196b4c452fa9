// Choosing the next token from a row of logits. Kept apart from the model maths.
// Order as transformers applies them: repetition penalty, then temperature, top-k, top-p.
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";

export interface SamplingOptions {
  /** > 0; 1 leaves logits as they are. Any sampling option turns sampling on. */
  temperature?: number;
  /** Keep the k most likely tokens (0 = off). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p, in (0, 1]. */
  topP?: number;
  /** > 0; 1 = off. Divides positive (multiplies negative) logits of tokens already in the sequence. */
  repetitionPenalty?: number;
  /** Seed of the sampler's random numbers (default: random). */
  seed?: number;
}

export function validateSampling(o: SamplingOptions): void {
  const bad = (name: string, v: unknown, want: string) => {
    throw new Error(`wasm-lm: ${name} = ${String(v)} is out of range (${want})`);
  };
  if (o.temperature !== undefined && !(o.temperature > 0 && Number.isFinite(o.temperature)))
    bad("temperature", o.temperature, "must be > 0");
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad("topK", o.topK, "an integer ≥ 0");
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) bad("topP", o.topP, "in (0, 1]");
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0 && Number.isFinite(o.repetitionPenalty)))
    bad("repetitionPenalty", o.repetitionPenalty, "must be > 0");
  if (o.seed !== undefined && !Number.isInteger(o.seed)) bad("seed", o.seed, "an integer");
}

export const isSampling = (o: SamplingOptions) => o.temperature !== undefined || o.topK !== undefined || o.topP !== undefined;

/** transformers' RepetitionPenaltyLogitsProcessor, in place. */
export function applyRepetitionPenalty(logits: Float32Array, seen: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const id of new Set(seen)) {
    const v = logits[id];
    logits[id] = v < 0 ? v * penalty : v / penalty;
  }
}

export function argmax(logits: ArrayLike<number>, start = 0, end = logits.length): number {
  let best = start;
  for (let i = start + 1; i < end; i++) if (logits[i] > logits[best]) best = i;
  return best - start;
}

export class Sampler {
  private rng;
  constructor(readonly opts: SamplingOptions = {}) {
    validateSampling(opts);
    this.rng = xoroshiro128plus(opts.seed ?? (Math.random() * 2 ** 31) | 0);
  }

  /** Pick a token from one row of logits (modified in place), given the ids so far. */
  next(logits: Float32Array, history: number[]): number {
    const o = this.opts;
    if (o.repetitionPenalty !== undefined) applyRepetitionPenalty(logits, history, o.repetitionPenalty);
    return this.pick(logits);
  }

  /** Pick a token from logits already penalised: temperature, top-k, top-p (greedy without them). */
  pick(logits: Float32Array): number {
    const o = this.opts;
    if (!isSampling(o)) return argmax(logits);

    const t = o.temperature ?? 1;
    // Candidates sorted by logit; top-k cuts the list, top-p cuts it where the mass reaches p.
    let idx = Array.from(logits.keys());
    if (o.topK && o.topK < idx.length) {
      idx.sort((a, b) => logits[b] - logits[a]);
      idx = idx.slice(0, o.topK);
    } else {
      idx.sort((a, b) => logits[b] - logits[a]);
    }
    const max = logits[idx[0]];
    let probs = idx.map((i) => Math.exp((logits[i] - max) / t));
    let sum = probs.reduce((a, b) => a + b, 0);
    if (o.topP !== undefined && o.topP < 1) {
      let acc = 0;
      let keep = 0;
      // Keep tokens until the cumulative probability reaches top_p (at least one).
      while (keep < probs.length) {
        acc += probs[keep] / sum;
        keep++;
        if (acc >= o.topP) break;
      }
      idx = idx.slice(0, keep);
      probs = probs.slice(0, keep);
      sum = probs.reduce((a, b) => a + b, 0);
    }
    let u = uniformFloat64(this.rng) * sum;
    for (let j = 0; j < idx.length; j++) {
      u -= probs[j];
      if (u <= 0) return idx[j];
    }
    return idx[idx.length - 1];
  }
}

/** log softmax of a row (−Infinity stays −Infinity). */
export function logSoftmax(x: Float32Array): Float32Array {
  let m = -Infinity;
  for (const v of x) if (v > m) m = v;
  let s = 0;
  for (const v of x) s += Math.exp(v - m);
  const lse = m + Math.log(s);
  return x.map((v) => v - lse);
}

/** The indices of the k largest entries, largest first (the lower index first among equals). */
export function topIds(x: ArrayLike<number>, k: number): number[] {
  const top: number[] = [];
  if (k <= 0) return top;
  for (let i = 0; i < x.length; i++) {
    if (top.length < k || x[i] > x[top[top.length - 1]]) {
      let j = Math.min(top.length, k - 1);
      if (top.length < k) top.push(i);
      while (j > 0 && x[top[j - 1]] < x[i]) {
        top[j] = top[j - 1];
        j--;
      }
      top[j] = i;
    }
  }
  return top;
}
