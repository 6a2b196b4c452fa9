// At OPT-125M's full shape (seeded random weights): the KV cache, left padding and batching must
// agree with the model's own uncached, unbatched forward pass.
import { beforeAll, describe, expect, it } from "vitest";
import { DecoderModel } from "../src/models/decoder.js";
import { SyntheticSource, syntheticConfig } from "../src/models/synthetic.js";
import { maxAbsDiff } from "./helpers.js";

const config = syntheticConfig("opt-125m");
const V = config.vocab_size;
const TOL = 1e-4;
let model: DecoderModel;

beforeAll(async () => {
  model = await DecoderModel.load(config, new SyntheticSource(config, 7), { build: "simd", threads: 1 });
});

const A = [2, 31414, 232, 328, 20, 5, 2441, 9, 5, 232, 4, 50118, 133];
const B = [2, 100, 524, 10, 1296, 9];

describe("synthetic OPT-125M", () => {
  it("prefill + cached decode steps equal the uncached forward of the whole sequence", () => {
    const cache = model.createCache(1, 32);
    try {
      const prompt = A.slice(0, 9);
      const cached = [model.forward([prompt], { cache, logits: "last" }).logits];
      for (const id of A.slice(9)) cached.push(model.forward([[id]], { cache, logits: "last" }).logits);
      const full = model.forward([A], { logits: "all" }).logits;
      cached.forEach((row, j) => {
        const t = 8 + j;
        const d = maxAbsDiff(row, full.subarray(t * V, (t + 1) * V));
        console.log(`position ${t}: cached vs uncached logits max|Δ| ${d.max.toExponential(2)}`);
        expect(d.max).toBeLessThanOrEqual(TOL);
      });
    } finally {
      cache.release();
    }
  });

  it("a left-padded batch gives each row's unbatched logits, and so do batched decode steps", () => {
    const T = A.length;
    const padded = [A, [...new Array(T - B.length).fill(1), ...B]];
    const mask = [A.map(() => 1), padded[1].map((id, t) => (t < T - B.length ? 0 : 1))];
    const cache = model.createCache(2, T + 2);
    try {
      const batch = model.forward(padded, { cache, attentionMask: mask, logits: "all" }).logits;
      const alone = [model.forward([A]).logits, model.forward([B]).logits];
      const dA = maxAbsDiff(batch.subarray(0, T * V), alone[0]);
      const dB = maxAbsDiff(batch.subarray((2 * T - B.length) * V, 2 * T * V), alone[1]);
      console.log(`batched vs alone: row A ${dA.max.toExponential(2)}, padded row B ${dB.max.toExponential(2)}`);
      expect(dA.max).toBeLessThanOrEqual(TOL);
      expect(dB.max).toBeLessThanOrEqual(TOL);

      const next = [[50], [60]];
      const step = model.forward(next, { cache, logits: "last" }).logits;
      const refA = model.forward([[...A, 50]], { logits: "last" }).logits;
      const refB = model.forward([[...B, 60]], { logits: "last" }).logits;
      const sA = maxAbsDiff(step.subarray(0, V), refA);
      const sB = maxAbsDiff(step.subarray(V, 2 * V), refB);
      console.log(`batched decode step vs alone: A ${sA.max.toExponential(2)}, B ${sB.max.toExponential(2)}`);
      expect(sA.max).toBeLessThanOrEqual(TOL);
      expect(sB.max).toBeLessThanOrEqual(TOL);
    } finally {
      cache.release();
    }
  });

  it("the arena returns to where it was after forward calls", () => {
    const before = model.arena.used;
    model.forward([A], { logits: "all", outputHiddenStates: true, outputAttentions: true });
    expect(model.arena.used).toBe(before);
  });

  it("two threads (linear split by rows, attention by heads) give the one-thread results exactly", async () => {
    const two = await DecoderModel.load(config, new SyntheticSource(config, 7), { build: "simd", threads: 2 });
    try {
      expect(two.threads).toBe(2);
      const c1 = model.createCache(1, 20);
      const c2 = two.createCache(1, 20);
      try {
        const a = [model.forward([A], { cache: c1, logits: "all", outputAttentions: true })];
        const b = [two.forward([A], { cache: c2, logits: "all", outputAttentions: true })];
        a.push(model.forward([[77]], { cache: c1, logits: "last", outputAttentions: true }));
        b.push(two.forward([[77]], { cache: c2, logits: "last", outputAttentions: true }));
        a.forEach((r, j) => {
          expect(maxAbsDiff(r.logits, b[j].logits).max).toBe(0);
          r.attentions!.forEach((p, l) => expect(maxAbsDiff(p, b[j].attentions![l]).max).toBe(0));
        });
      } finally {
        c2.release();
        c1.release();
      }
    } finally {
      two.dispose();
    }
  });
});
