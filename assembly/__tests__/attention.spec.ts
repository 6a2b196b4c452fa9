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
//
// f16 caches (kvStoreF16, attentionF16 and their scalar twins), at the same shapes: the stored bits
// are f32ToHalfBits of each value, exactly (that conversion is checked against an f64 rounding in
// vecmath.spec.ts), in both twins, and nothing outside the rows written changes; attentionF16 on
// the f16 caches gives attention on the same caches widened to f32 (halfScalar) bit for bit, and
// the scalar twins likewise, since widening is exact and the order of operations is shared — so
// every tolerance above carries over, and a wrong widening (a lost sign, a wrong exponent bias, a
// misread row, a 2^112 folded in the wrong place) shows as a difference, however small. The inputs
// include halves' awkward values: subnormal halves (|x| < 2^-14), ±0, ties; the store alone also
// sees ±65504, overflow to ±inf, ±inf and NaN.
import {
  attention, attentionF16, attentionF16Scalar, attentionScalar, kvStore, kvStoreF16, kvStoreF16Scalar, kvStoreScalar,
} from "../kernels/attention";
import { f32ToHalfBits, halfScalar } from "../kernels/vecmath";
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

// ---- f16 caches ----------------------------------------------------------------------------------

const HALF_SENTINEL: u16 = 0xabcd;

/** Exact equality of n u16 values, the first difference in the message. */
function expectEqualU16(name: string, got: usize, ref: usize, n: i32): void {
  let at = -1;
  for (let i = 0; i < n; i++) {
    if (load<u16>(got + (<usize>i << 1)) != load<u16>(ref + (<usize>i << 1))) {
      at = i;
      break;
    }
  }
  let msg = name + ": n=" + n.toString();
  if (at >= 0) {
    msg += " first difference at [" + at.toString() + "] got 0x" + load<u16>(got + (<usize>at << 1)).toString(16) +
      " ref 0x" + load<u16>(ref + (<usize>at << 1)).toString(16);
  }
  expect<i32>(at).toBe(-1, msg);
}

/**
 * K or V projections (L, Hkv·D) in U(-1, 1), with every 7th value one of the halves' awkward ones
 * (subnormal halves, ±0, ties); with `extreme`, also ±65504, 65519 (rounds to 65504), 65520 and 1e5
 * (round to ±inf), ±inf and NaN — for the store only: they would drown the tolerances.
 */
function fillKV(p: usize, n: i32, rng: Rng, extreme: bool = false): void {
  const awkward: f32[] = [3e-6, -4.5e-7, 6.1e-5, -0.0, 0.0, 1.0004883, -0.50024414, 2.9802322e-8];
  const wild: f32[] = [65504, -65504, 65519, 65520, -1e5, Infinity, -Infinity, NaN, 5.9604645e-8, -8.940697e-8];
  fillUniform(p, n, rng, -1, 1);
  for (let i = 0; i < n; i += 7) store<f32>(p + (<usize>i << 2), awkward[(i / 7) % awkward.length]);
  if (extreme) for (let i = 3; i < n; i += 5) store<f32>(p + (<usize>i << 2), wild[(i / 5) % wild.length]);
}

/**
 * kvStoreF16 = kvStoreF16Scalar = f32ToHalfBits per value; attentionF16 (unless storeOnly) as
 * described above. qGain multiplies q (and divides the scale): 2^16 puts every query row past 2^15,
 * where attentionF16 folds less of 2^112 into q (still exact here: no product is near f32's floor).
 */
function checkF16(T: i32, past: i32, H: i32, Hkv: i32, D: i32, scale: f32, h0: i32, h1: i32, maskKind: i32, withProbs: bool,
  misalign: i32, seed: u32, storeOnly: bool = false, qGain: f32 = 1): void {
  const rng = new Rng(seed);
  const L = past + T;
  const maxCtx = L + 3;
  const HD = H * D, KD = Hkv * D;
  const kSrc = allocF32(L * KD, misalign), vSrc = allocF32(L * KD, misalign);
  fillKV(kSrc, L * KD, rng, storeOnly);
  fillKV(vSrc, L * KD, rng, storeOnly);
  const nC = Hkv * maxCtx * D;
  // f16 caches (allocF32 gives twice the room needed; misalign shifts by whole floats = 2 halves)
  const k16 = allocF32(nC, misalign), v16 = allocF32(nC, misalign), k16Ref = allocF32(nC, misalign), v16Ref = allocF32(nC, misalign);
  for (let i = 0; i < nC; i++) {
    store<u16>(k16 + (<usize>i << 1), HALF_SENTINEL);
    store<u16>(v16 + (<usize>i << 1), HALF_SENTINEL);
    store<u16>(k16Ref + (<usize>i << 1), HALF_SENTINEL);
    store<u16>(v16Ref + (<usize>i << 1), HALF_SENTINEL);
  }
  const name = "attentionF16 T=" + T.toString() + " past=" + past.toString() + " H=" + H.toString() + " Hkv=" + Hkv.toString() +
    " D=" + D.toString() + " scale=" + scale.toString() + " heads [" + h0.toString() + "," + h1.toString() + ") mask " +
    maskKind.toString() + (withProbs ? " probs" : "") + (misalign ? " unaligned" : "");
  // The past in one call, the new T in another, as the model stores them.
  if (past > 0) {
    kvStoreF16(k16, kSrc, past, 0, Hkv, D, maxCtx);
    kvStoreF16(v16, vSrc, past, 0, Hkv, D, maxCtx);
    kvStoreF16Scalar(k16Ref, kSrc, past, 0, Hkv, D, maxCtx);
    kvStoreF16Scalar(v16Ref, vSrc, past, 0, Hkv, D, maxCtx);
  }
  const off = <usize>(past * KD) << 2;
  kvStoreF16(k16, kSrc + off, T, past, Hkv, D, maxCtx);
  kvStoreF16(v16, vSrc + off, T, past, Hkv, D, maxCtx);
  kvStoreF16Scalar(k16Ref, kSrc + off, T, past, Hkv, D, maxCtx);
  kvStoreF16Scalar(v16Ref, vSrc + off, T, past, Hkv, D, maxCtx);
  expectEqualU16(name + " kvStoreF16 K", k16, k16Ref, nC);
  expectEqualU16(name + " kvStoreF16 V", v16, v16Ref, nC);
  // Each stored half is f32ToHalfBits of its value; rows past L keep the sentinel.
  let wrong = 0;
  for (let g = 0; g < Hkv; g++) {
    for (let j = 0; j < maxCtx; j++) {
      for (let d = 0; d < D; d++) {
        const at = k16 + (<usize>((g * maxCtx + j) * D + d) << 1);
        const want: u16 = j < L ? f32ToHalfBits(load<f32>(kSrc + (<usize>(j * KD + g * D + d) << 2))) : HALF_SENTINEL;
        if (load<u16>(at) != want) wrong++;
      }
    }
  }
  expect<i32>(wrong).toBe(0, name + " kvStoreF16: halves that are not f32ToHalfBits of their value (or rows past L written)");
  if (storeOnly) {
    freeAll();
    return;
  }

  // The same caches widened to f32 (rows past L: zeros), for attention.
  const k32 = allocF32(nC, misalign), v32 = allocF32(nC, misalign);
  for (let i = 0; i < nC; i++) {
    const j = (i / D) % maxCtx;
    store<f32>(k32 + (<usize>i << 2), j < L ? halfScalar(load<u16>(k16 + (<usize>i << 1))) : 0);
    store<f32>(v32 + (<usize>i << 2), j < L ? halfScalar(load<u16>(v16 + (<usize>i << 1))) : 0);
  }

  const q = allocF32(T * HD, misalign);
  fillUniform(q, T * HD, rng, -4, 4);
  for (let i = 0; i < T * HD; i++) store<f32>(q + (<usize>i << 2), load<f32>(q + (<usize>i << 2)) * qGain);
  scale /= qGain;
  let keyMask: usize = 0;
  if (maskKind) {
    keyMask = allocBytes(L) + <usize>misalign;
    for (let j = 0; j < L; j++) store<u8>(keyMask + <usize>j, maskKind == 1 ? (rng.uniform(0, 1) < 0.25 ? 0 : 1) : j < 5 ? 0 : 1);
  }
  const nP = H * T * L;
  const out16 = allocF32(T * HD, misalign), out32 = allocF32(T * HD, misalign);
  const out16s = allocF32(T * HD, misalign), out32s = allocF32(T * HD, misalign);
  const pr16 = allocF32(nP, misalign), pr32 = allocF32(nP, misalign), pr16s = allocF32(nP, misalign), pr32s = allocF32(nP, misalign);
  const bufs: usize[] = [out16, out32, out16s, out32s];
  for (let i = 0; i < bufs.length; i++) fillConst(bufs[i], T * HD, SENTINEL);
  const pbufs: usize[] = [pr16, pr32, pr16s, pr32s];
  for (let i = 0; i < pbufs.length; i++) fillConst(pbufs[i], nP, SENTINEL);
  const scratch = allocF32(L, misalign);
  const P16 = withProbs ? pr16 : 0, P32 = withProbs ? pr32 : 0;

  attentionF16(out16, q, k16, v16, keyMask, P16, scratch, T, past, H, Hkv, D, maxCtx, scale, h0, h1);
  attention(out32, q, k32, v32, keyMask, P32, scratch, T, past, H, Hkv, D, maxCtx, scale, h0, h1);
  attentionF16Scalar(out16s, q, k16, v16, keyMask, pr16s, scratch, T, past, H, Hkv, D, maxCtx, scale, h0, h1);
  attentionScalar(out32s, q, k32, v32, keyMask, pr32s, scratch, T, past, H, Hkv, D, maxCtx, scale, h0, h1);

  expectEqual(name + " out = attention on the widened cache", out16, out32, T * HD);
  if (withProbs) expectEqual(name + " probs = attention's", pr16, pr32, nP);
  expectEqual(name + " scalar out = attentionScalar on the widened cache", out16s, out32s, T * HD);
  expectEqual(name + " scalar probs = attentionScalar's", pr16s, pr32s, nP);
  const tol = ATT_C * EPS * (8 + Mathf.sqrt(<f32>L) + Mathf.sqrt(<f32>D)) * scoreGain(scale, D);
  expectClose(name + " out vs scalar twin", out16, out16s, T * HD, tol, tol);
  if (withProbs) expectClose(name + " probs vs scalar twin", pr16, pr16s, nP, tol, tol);
  for (let t = 0; t < T; t++) {
    const row = out16 + (<usize>(t * HD) << 2);
    expectAll(name + " heads < h0", row, h0 * D, SENTINEL);
    expectAll(name + " heads >= h1", row + (<usize>(h1 * D) << 2), (H - h1) * D, SENTINEL);
  }
  freeAll();
}

describe("f16 caches: kvStoreF16, attentionF16 = attention on the widened cache, bit for bit", () => {
  it("kvStoreF16: ±inf, NaN, overflow to inf, ±65504, subnormal halves; D 1..17 and 64, misaligned", () => {
    const Ds: i32[] = [1, 2, 7, 8, 9, 15, 16, 17, 64];
    for (let i = 0; i < Ds.length; i++) checkF16(6, 5, 2, 2, Ds[i], 1, 0, 2, 0, false, i % 4, 190 + <u32>i, true);
  });
  it("awkward head sizes 1..17 (the 8-lane store's tail), past 0 and > 0, masks, probs or scratch", () => {
    const Ds: i32[] = [1, 3, 4, 5, 7, 8, 9, 17];
    let seed: u32 = 200;
    for (let i = 0; i < Ds.length; i++) {
      const D = Ds[i], s = invSqrt(D);
      checkF16(1, 0, 3, 3, D, s, 0, 3, 0, true, i % 4, seed++);
      checkF16(5, 2, 3, 3, D, s, 0, 3, 1, true, (i + 2) % 4, seed++);
      checkF16(1, 7, 2, 2, D, s, 0, 2, 1, false, (i + 3) % 4, seed++);
      checkF16(7, 9, 3, 3, D, s, 1, 2, 2, true, i % 4, seed++);
    }
  });
  it("grouped-query and multi-query heads, head ranges cutting through a group, other scales", () => {
    checkF16(5, 0, 4, 2, 64, invSqrt(64), 0, 4, 0, true, 0, 230);
    checkF16(6, 3, 6, 3, 17, invSqrt(17), 1, 4, 1, true, 1, 231);
    checkF16(1, 12, 5, 1, 7, invSqrt(7), 2, 5, 1, false, 3, 232);
    checkF16(4, 9, 4, 1, 64, 0.5, 0, 4, 0, true, 0, 233);
    checkF16(6, 4, 4, 4, 17, invSqrt(17) / 3, 0, 4, 1, true, 2, 234);
  });
  it("OPT-125M (H = 12, D = 64): prompt T = 64, decode past = 127 with padding, chunk T = 16 past 100 heads [4, 9)", () => {
    checkF16(64, 0, 12, 12, 64, invSqrt(64), 0, 12, 0, true, 0, 240);
    checkF16(1, 127, 12, 12, 64, invSqrt(64), 0, 12, 1, false, 0, 241);
    checkF16(16, 100, 12, 12, 64, invSqrt(64), 4, 9, 1, true, 1, 242);
  });
  it("SmolLM-135M (H = 9, Hkv = 3) decode past = 63; Qwen2.5-0.5B (H = 14, Hkv = 2) chunk, heads [3, 11)", () => {
    checkF16(1, 63, 9, 3, 64, invSqrt(64), 0, 9, 1, false, 0, 250);
    checkF16(16, 40, 14, 2, 64, invSqrt(64), 3, 11, 1, true, 0, 251);
  });
  it("query rows with |q| ≥ 2^15 (q·2^112 would overflow f32): q × 2^16, scale / 2^16", () => {
    checkF16(3, 9, 4, 2, 17, invSqrt(17), 0, 4, 1, true, 1, 260, false, 65536);
    checkF16(1, 40, 12, 12, 64, invSqrt(64), 0, 12, 0, false, 0, 261, false, 65536);
  });
});
