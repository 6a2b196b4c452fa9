// kvStore / attention vs their scalar twins, and both against the plain definition written out in
// f64 (referenceAttention below, reading K/V through the GQA head map on its own): awkward heads and
// head sizes, grouped-query heads (H = 4 over Hkv = 2, 6 over 3, MQA 5 over 1, head ranges cutting
// through a group), past = 0 and past > 0, padding key masks (including queries that see no key at
// all), probs out or scratch, head ranges [h0, h1), scales other than 1/√D (GPT-2's per-layer one and
// sharper ones), OPT-125M's H = 12, D = 64, and GQA model shapes (SmolLM-135M, Qwen2.5-0.5B).
//
// Tolerance: scores are D-term dots (error ~ε·√D·|q||k|·scale), probabilities carry a relative error
// of a few ulp from exp plus ~√L·ε from the L-term sum, and out sums L weighted rows of V (|v| ≤ 1).
// So atol = rtol = ATT_C·ε·(8 + √L + √D)·max(1, scale·√D) for both out and probs (the last factor:
// scores, and their errors, grow with the scale); ATT_C = 1. Worst measured: 0.25 of it for SIMD vs
// scalar (T = 128, D = 64), 0.18 for the scalar twin vs f64, 0.09 with scale = 4/√D. A dropped key,
// head element or a wrong KV head costs ~p·|v| ≈ 1/L, far above (h % Hkv for the map fails by 10^5×).
import { attention, attentionScalar, kvStore, kvStoreScalar } from "../kernels/attention";
import { allocBytes, allocF32, expectAll, expectClose, expectEqual, fillConst, fillUniform, freeAll, EPS, Rng } from "./helpers";

const ATT_C: f32 = 1;
const SENTINEL: f32 = -777.25;

/** 1/√D: the usual scale; tests pass it unless they exercise another. */
function invSqrt(D: i32): f32 {
  return 1.0 / Mathf.sqrt(<f32>D);
}

/** How much larger than at 1/√D the scores get (errors grow with them); never below 1. */
function scoreGain(scale: f32, D: i32): f32 {
  return max<f32>(1, scale * Mathf.sqrt(<f32>D));
}

/**
 * The plain definition, written out again in f64 for heads [h0, h1): query head h reads KV head
 * h / (H / Hkv) straight from the projections kSrc, vSrc: (L, Hkv·D), not through the cache. Writes
 * out (T, H·D) and probs (H, T, L) (rounded to f32) for those heads only.
 */
function referenceAttention(out: usize, probs: usize, q: usize, kSrc: usize, vSrc: usize, keyMask: usize,
  T: i32, past: i32, H: i32, Hkv: i32, D: i32, scale: f32, h0: i32, h1: i32): void {
  const L = past + T;
  const group = H / Hkv;
  const s = new StaticArray<f64>(L);
  const o = new StaticArray<f64>(D);
  for (let h = h0; h < h1; h++) {
    const g = h / group;
    for (let t = 0; t < T; t++) {
      let m: f64 = -Infinity;
      for (let j = 0; j < L; j++) {
        s[j] = -Infinity;
        if (j > past + t || (keyMask != 0 && load<u8>(keyMask + <usize>j) == 0)) continue;
        let dot: f64 = 0;
        for (let d = 0; d < D; d++) {
          dot += <f64>load<f32>(q + (<usize>(t * H * D + h * D + d) << 2)) * <f64>load<f32>(kSrc + (<usize>(j * Hkv * D + g * D + d) << 2));
        }
        s[j] = dot * <f64>scale;
        m = Math.max(m, s[j]);
      }
      let sum: f64 = 0;
      for (let j = 0; j < L; j++) {
        s[j] = m == -Infinity || s[j] == -Infinity ? 0 : Math.exp(s[j] - m);
        sum += s[j];
      }
      for (let d = 0; d < D; d++) o[d] = 0;
      for (let j = 0; j < L; j++) {
        const p = sum > 0 ? s[j] / sum : 0;
        store<f32>(probs + (<usize>((h * T + t) * L + j) << 2), <f32>p);
        for (let d = 0; d < D; d++) o[d] += p * <f64>load<f32>(vSrc + (<usize>(j * Hkv * D + g * D + d) << 2));
      }
      for (let d = 0; d < D; d++) store<f32>(out + (<usize>(t * H * D + h * D + d) << 2), <f32>o[d]);
    }
  }
}

/**
 * H query heads over Hkv KV heads. maskKind: 0 none, 1 random padding (~25% of keys hidden),
 * 2 keys [0, 5) hidden (queries at positions < 5 see nothing).
 */
function check(T: i32, past: i32, H: i32, Hkv: i32, D: i32, scale: f32, h0: i32, h1: i32, maskKind: i32, withProbs: bool,
  misalign: i32, seed: u32): void {
  const rng = new Rng(seed);
  const L = past + T;
  const maxCtx = L + 3;
  const HD = H * D, KD = Hkv * D;
  // K and V (L, Hkv·D) for all L positions, stored through kvStore: the past in one call, the new T in another.
  const kSrc = allocF32(L * KD, misalign), vSrc = allocF32(L * KD, misalign);
  fillUniform(kSrc, L * KD, rng, -1, 1);
  fillUniform(vSrc, L * KD, rng, -1, 1);
  const nC = Hkv * maxCtx * D;
  const kCache = allocF32(nC, misalign), vCache = allocF32(nC, misalign);
  const kRef = allocF32(nC, misalign);
  fillConst(kCache, nC, 0);
  fillConst(vCache, nC, 0);
  fillConst(kRef, nC, 0);
  if (past > 0) {
    kvStore(kCache, kSrc, past, 0, Hkv, D, maxCtx);
    kvStore(vCache, vSrc, past, 0, Hkv, D, maxCtx);
    kvStoreScalar(kRef, kSrc, past, 0, Hkv, D, maxCtx);
  }
  kvStore(kCache, kSrc + (<usize>(past * KD) << 2), T, past, Hkv, D, maxCtx);
  kvStore(vCache, vSrc + (<usize>(past * KD) << 2), T, past, Hkv, D, maxCtx);
  kvStoreScalar(kRef, kSrc + (<usize>(past * KD) << 2), T, past, Hkv, D, maxCtx);
  const name = "attention T=" + T.toString() + " past=" + past.toString() + " H=" + H.toString() + " Hkv=" + Hkv.toString() +
    " D=" + D.toString() + " scale=" + scale.toString() + " heads [" + h0.toString() + "," + h1.toString() + ") mask " +
    maskKind.toString() + (withProbs ? " probs" : "") + (misalign ? " unaligned" : "");
  expectEqual(name + " kvStore", kCache, kRef, nC);

  const q = allocF32(T * HD, misalign);
  fillUniform(q, T * HD, rng, -4, 4); // sharper than U(-1, 1): scores up to ~±6 at 1/√D
  let keyMask: usize = 0;
  if (maskKind) {
    keyMask = allocBytes(L) + <usize>misalign;
    for (let j = 0; j < L; j++) {
      let keep: u8 = 1;
      if (maskKind == 1) keep = rng.uniform(0, 1) < 0.25 ? 0 : 1;
      if (maskKind == 2) keep = j < 5 ? 0 : 1;
      store<u8>(keyMask + <usize>j, keep);
    }
  }
  const out = allocF32(T * HD, misalign), outRef = allocF32(T * HD, misalign), outPlain = allocF32(T * HD, misalign);
  fillConst(out, T * HD, SENTINEL);
  fillConst(outRef, T * HD, SENTINEL);
  fillConst(outPlain, T * HD, SENTINEL);
  const nP = H * T * L;
  const probs = withProbs ? allocF32(nP, misalign) : 0;
  const probsRef = allocF32(nP, misalign), probsPlain = allocF32(nP, misalign);
  if (withProbs) fillConst(probs, nP, SENTINEL);
  fillConst(probsRef, nP, SENTINEL);
  fillConst(probsPlain, nP, SENTINEL);
  const scratch = allocF32(L, misalign);

  attention(out, q, kCache, vCache, keyMask, probs, scratch, T, past, H, Hkv, D, maxCtx, scale, h0, h1);
  attentionScalar(outRef, q, kCache, vCache, keyMask, probsRef, scratch, T, past, H, Hkv, D, maxCtx, scale, h0, h1);
  referenceAttention(outPlain, probsPlain, q, kSrc, vSrc, keyMask, T, past, H, Hkv, D, scale, h0, h1);

  const tol = ATT_C * EPS * (8 + Mathf.sqrt(<f32>L) + Mathf.sqrt(<f32>D)) * scoreGain(scale, D);
  expectClose(name + " out", out, outRef, T * HD, tol, tol);
  if (withProbs) expectClose(name + " probs", probs, probsRef, nP, tol, tol);
  // Both against the plain f64 definition (which reads K/V through the GQA head map on its own).
  expectClose(name + " out vs plain", out, outPlain, T * HD, tol, tol);
  expectClose(name + " scalar out vs plain", outRef, outPlain, T * HD, tol, tol);
  expectClose(name + " scalar probs vs plain", probsRef, probsPlain, nP, tol, tol);
  // Heads outside [h0, h1): untouched.
  for (let t = 0; t < T; t++) {
    const row = out + (<usize>(t * HD) << 2);
    expectAll(name + " heads < h0", row, h0 * D, SENTINEL);
    expectAll(name + " heads >= h1", row + (<usize>(h1 * D) << 2), (H - h1) * D, SENTINEL);
  }
  if (withProbs) {
    expectAll(name + " probs heads < h0", probs, h0 * T * L, SENTINEL);
    expectAll(name + " probs heads >= h1", probs + (<usize>(h1 * T * L) << 2), (H - h1) * T * L, SENTINEL);
  }
  // The reference itself: causal zeros past the diagonal, rows summing to 1 (or 0 if nothing visible).
  for (let h = h0; h < h1; h++) {
    for (let t = 0; t < T; t++) {
      const row = probsRef + (<usize>((h * T + t) * L) << 2);
      expectAll(name + " causal zeros", row + (<usize>(past + t + 1) << 2), L - past - t - 1, 0);
      let s: f64 = 0;
      let visible = false;
      for (let j = 0; j <= past + t; j++) {
        s += <f64>load<f32>(row + (<usize>j << 2));
        if (keyMask == 0 || load<u8>(keyMask + <usize>j) != 0) visible = true;
        else expectAll(name + " masked key", row + (<usize>j << 2), 1, 0);
      }
      expect<bool>(Math.abs(s - (visible ? 1.0 : 0.0)) < 1e-5).toBe(true, name + " probs row sum " + s.toString());
      if (!visible) expectAll(name + " no visible key -> zeros", out + (<usize>(t * HD + h * D) << 2), D, 0);
    }
  }
  freeAll();
}

describe("attention, awkward sizes (multi-head: Hkv = H)", () => {
  it("head sizes 1..17, past 0 and > 0, with and without probs", () => {
    const Ds: i32[] = [1, 3, 4, 5, 7, 17];
    let seed: u32 = 1;
    for (let i = 0; i < Ds.length; i++) {
      const D = Ds[i], s = invSqrt(D);
      check(1, 0, 3, 3, D, s, 0, 3, 0, true, i % 4, seed++);
      check(3, 0, 3, 3, D, s, 0, 3, 0, false, (i + 1) % 4, seed++);
      check(5, 2, 3, 3, D, s, 0, 3, 1, true, (i + 2) % 4, seed++);
      check(1, 7, 2, 2, D, s, 0, 2, 1, false, (i + 3) % 4, seed++);
      check(7, 9, 3, 3, D, s, 1, 2, 1, true, i % 4, seed++);
    }
  });
  it("queries that see no key write zeros", () => {
    check(8, 0, 2, 2, 5, invSqrt(5), 0, 2, 2, true, 0, 40);
    check(8, 0, 2, 2, 64, invSqrt(64), 0, 2, 2, false, 1, 41);
    check(1, 3, 2, 2, 17, invSqrt(17), 0, 2, 2, true, 3, 42);
    check(6, 0, 6, 2, 7, invSqrt(7), 0, 6, 2, true, 2, 43); // and with grouped heads
  });
});

describe("attention, grouped-query heads (H % Hkv == 0)", () => {
  it("H = 4, Hkv = 2; H = 6, Hkv = 3; MQA H = 5, Hkv = 1; D = 3, 7, 17, 64", () => {
    const Ds: i32[] = [3, 7, 17, 64];
    let seed: u32 = 100;
    for (let i = 0; i < Ds.length; i++) {
      const D = Ds[i], s = invSqrt(D);
      check(5, 0, 4, 2, D, s, 0, 4, 0, true, i % 4, seed++);
      check(1, 9, 4, 2, D, s, 0, 4, 1, false, (i + 1) % 4, seed++);
      check(6, 3, 6, 3, D, s, 0, 6, 1, true, (i + 2) % 4, seed++);
      check(3, 0, 5, 1, D, s, 0, 5, 0, true, (i + 3) % 4, seed++);
      check(1, 12, 5, 1, D, s, 0, 5, 1, true, i % 4, seed++);
    }
  });
  it("head ranges that cut through a group", () => {
    check(4, 5, 6, 3, 17, invSqrt(17), 1, 4, 1, true, 1, 130); // heads 1..3: KV heads 0, 1
    check(3, 2, 6, 3, 7, invSqrt(7), 3, 4, 0, true, 2, 131); // one head, second of its group
    check(2, 6, 5, 1, 7, invSqrt(7), 2, 5, 1, false, 3, 132); // MQA, a tail of the heads
    check(5, 0, 4, 2, 64, invSqrt(64), 1, 3, 0, true, 0, 133); // straddles both KV heads
  });
});

describe("attention, other scales", () => {
  it("GPT-2's 1/(√D·(layer + 1)), and a scale sharper than 1/√D", () => {
    check(6, 4, 4, 4, 17, invSqrt(17) / 3, 0, 4, 1, true, 1, 140); // layer 2
    check(1, 20, 12, 12, 64, invSqrt(64) / 12, 0, 12, 0, true, 0, 141); // GPT-2 small's last layer
    check(7, 3, 6, 2, 7, 0.9, 0, 6, 1, true, 2, 142); // ≈ 2.4/√D
    check(4, 9, 4, 1, 64, 0.5, 0, 4, 0, true, 0, 143); // 4/√D: peaked softmax
  });
});

describe("attention, OPT-125M (H = 12, D = 64)", () => {
  it("prompt: T = 128, past = 0, probs", () => {
    check(128, 0, 12, 12, 64, invSqrt(64), 0, 12, 0, true, 0, 50);
  });
  it("decode: T = 1, past = 127, padding mask, scratch", () => {
    check(1, 127, 12, 12, 64, invSqrt(64), 0, 12, 1, false, 0, 51);
  });
  it("chunk: T = 16, past = 100, padding mask, probs, heads [4, 9)", () => {
    check(16, 100, 12, 12, 64, invSqrt(64), 4, 9, 1, true, 0, 52);
  });
});

describe("attention, GQA model shapes (D = 64)", () => {
  it("SmolLM-135M (H = 9, Hkv = 3): prompt T = 64 and decode past = 63", () => {
    check(64, 0, 9, 3, 64, invSqrt(64), 0, 9, 0, true, 0, 60);
    check(1, 63, 9, 3, 64, invSqrt(64), 0, 9, 1, false, 0, 61);
  });
  it("Qwen2.5-0.5B (H = 14, Hkv = 2): chunk T = 16, past = 40, heads [3, 11)", () => {
    check(16, 40, 14, 2, 64, invSqrt(64), 3, 11, 1, true, 0, 62);
  });
});
