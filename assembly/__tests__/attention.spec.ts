// kvStore / attention vs their scalar twins: awkward heads and head sizes, past = 0 and past > 0,
// padding key masks (including queries that see no key at all), probs out or scratch, head ranges
// [h0, h1), and OPT-125M's H = 12, D = 64.
//
// Tolerance: scores are D-term dots (error ~ε·√D·|q||k|/√D), probabilities carry a relative error
// of a few ulp from exp plus ~√L·ε from the L-term sum, and out sums L weighted rows of V (|v| ≤ 1).
// So atol = rtol = ATT_C·ε·(8 + √L + √D) for both out and probs; ATT_C = 1 (worst measured: 0.21 of
// it, at T = 128, D = 64). A dropped key or head element costs ~p·|v| ≈ 1/L, far above.
import { attention, attentionScalar, kvStore, kvStoreScalar } from "../kernels/attention";
import { allocBytes, allocF32, expectAll, expectClose, expectEqual, fillConst, fillUniform, freeAll, EPS, Rng } from "./helpers";

const ATT_C: f32 = 1;
const SENTINEL: f32 = -777.25;

/**
 * maskKind: 0 none, 1 random padding (~25% of keys hidden), 2 keys [0, 5) hidden (queries at
 * positions < 5 see nothing).
 */
function check(T: i32, past: i32, H: i32, D: i32, h0: i32, h1: i32, maskKind: i32, withProbs: bool, misalign: i32, seed: u32): void {
  const rng = new Rng(seed);
  const L = past + T;
  const maxCtx = L + 3;
  const HD = H * D;
  // K and V for all L positions, stored through kvStore: the past in one call, the new T in another.
  const kSrc = allocF32(L * HD, misalign), vSrc = allocF32(L * HD, misalign);
  fillUniform(kSrc, L * HD, rng, -1, 1);
  fillUniform(vSrc, L * HD, rng, -1, 1);
  const kCache = allocF32(H * maxCtx * D, misalign), vCache = allocF32(H * maxCtx * D, misalign);
  const kRef = allocF32(H * maxCtx * D, misalign);
  fillConst(kCache, H * maxCtx * D, 0);
  fillConst(vCache, H * maxCtx * D, 0);
  fillConst(kRef, H * maxCtx * D, 0);
  if (past > 0) {
    kvStore(kCache, kSrc, past, 0, H, D, maxCtx);
    kvStore(vCache, vSrc, past, 0, H, D, maxCtx);
    kvStoreScalar(kRef, kSrc, past, 0, H, D, maxCtx);
  }
  kvStore(kCache, kSrc + (<usize>(past * HD) << 2), T, past, H, D, maxCtx);
  kvStore(vCache, vSrc + (<usize>(past * HD) << 2), T, past, H, D, maxCtx);
  kvStoreScalar(kRef, kSrc + (<usize>(past * HD) << 2), T, past, H, D, maxCtx);
  const name = "attention T=" + T.toString() + " past=" + past.toString() + " H=" + H.toString() + " D=" + D.toString() +
    " heads [" + h0.toString() + "," + h1.toString() + ") mask " + maskKind.toString() + (withProbs ? " probs" : "") +
    (misalign ? " unaligned" : "");
  expectEqual(name + " kvStore", kCache, kRef, H * maxCtx * D);

  const q = allocF32(T * HD, misalign);
  fillUniform(q, T * HD, rng, -4, 4); // sharper than U(-1, 1): scores up to ~±6
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
  const out = allocF32(T * HD, misalign), outRef = allocF32(T * HD, misalign);
  fillConst(out, T * HD, SENTINEL);
  fillConst(outRef, T * HD, SENTINEL);
  const nP = H * T * L;
  const probs = withProbs ? allocF32(nP, misalign) : 0;
  const probsRef = allocF32(nP, misalign);
  if (withProbs) fillConst(probs, nP, SENTINEL);
  fillConst(probsRef, nP, SENTINEL);
  const scratch = allocF32(L, misalign);

  attention(out, q, kCache, vCache, keyMask, probs, scratch, T, past, H, D, maxCtx, h0, h1);
  attentionScalar(outRef, q, kCache, vCache, keyMask, probsRef, scratch, T, past, H, D, maxCtx, h0, h1);

  const tol = ATT_C * EPS * (8 + Mathf.sqrt(<f32>L) + Mathf.sqrt(<f32>D));
  expectClose(name + " out", out, outRef, T * HD, tol, tol);
  if (withProbs) expectClose(name + " probs", probs, probsRef, nP, tol, tol);
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

describe("attention, awkward sizes", () => {
  it("head sizes 1..17, past 0 and > 0, with and without probs", () => {
    const Ds: i32[] = [1, 3, 4, 5, 7, 17];
    let seed: u32 = 1;
    for (let i = 0; i < Ds.length; i++) {
      check(1, 0, 3, Ds[i], 0, 3, 0, true, i % 4, seed++);
      check(3, 0, 3, Ds[i], 0, 3, 0, false, (i + 1) % 4, seed++);
      check(5, 2, 3, Ds[i], 0, 3, 1, true, (i + 2) % 4, seed++);
      check(1, 7, 2, Ds[i], 0, 2, 1, false, (i + 3) % 4, seed++);
      check(7, 9, 3, Ds[i], 1, 2, 1, true, i % 4, seed++);
    }
  });
  it("queries that see no key write zeros", () => {
    check(8, 0, 2, 5, 0, 2, 2, true, 0, 40);
    check(8, 0, 2, 64, 0, 2, 2, false, 1, 41);
    check(1, 3, 2, 17, 0, 2, 2, true, 3, 42);
  });
});

describe("attention, OPT-125M (H = 12, D = 64)", () => {
  it("prompt: T = 128, past = 0, probs", () => {
    check(128, 0, 12, 64, 0, 12, 0, true, 0, 50);
  });
  it("decode: T = 1, past = 127, padding mask, scratch", () => {
    check(1, 127, 12, 64, 0, 12, 1, false, 0, 51);
  });
  it("chunk: T = 16, past = 100, padding mask, probs, heads [4, 9)", () => {
    check(16, 100, 12, 64, 4, 9, 1, true, 0, 52);
  });
});
