// Element-wise kernels vs their scalar twins on awkward lengths, in place and unaligned, plus the
// boundaries of erfc's piecewise approximation and non-finite inputs.
//
// Tolerance: relu / add / scale / addBias / embedGather do the same f32 operations on both sides:
// bitwise equal. gelu / geluTanh / silu evaluate the same formula with the vector exp (≤ ~2 ulp) and
// fused or split multiply-adds: rtol = 8ε (≈ 1e-6; worst measured 2.7ε), atol = 1e-30 for values
// that underflow.
import {
  add, addBias, addBiasScalar, addScalar, embedGather, embedGatherScalar, gelu, geluScalar, geluTanh,
  geluTanhScalar, relu, reluScalar, scale, scaleScalar, silu, siluScalar,
} from "../kernels/elementwise";
import { allocF32, copyF32, expectClose, expectEqual, fillUniform, freeAll, EPS, Rng } from "./helpers";

const LENGTHS: i32[] = [0, 1, 2, 3, 4, 5, 7, 8, 17, 33, 1000];
const ACT_RTOL: f32 = 8 * EPS;

/** x/√2 at erfc's region edges (0.84375, 1.25, 1/0.35, 6, 28), both sides, both signs. */
function fillSpecial(p: usize, n: i32, rng: Rng): void {
  const edges: f32[] = [0.84375, 1.25, 2.857142857, 6, 28, 0.25];
  const specials: f32[] = [0, -0, 1e-30, -1e-30, 1e-8, -1e-8, 30, -30, 200, -200, 1e30, -1e30, Infinity, -Infinity, NaN];
  let i = 0;
  for (let e = 0; e < edges.length; e++) {
    for (let s = -1; s <= 1; s += 2) {
      for (let d = -1; d <= 1; d++) {
        if (i < n) store<f32>(p + (<usize>(i++) << 2), <f32>s * (edges[e] + <f32>d * 1e-6) * 1.41421356);
      }
    }
  }
  for (let s = 0; s < specials.length && i < n; s++) store<f32>(p + (<usize>(i++) << 2), specials[s]);
  for (; i < n; i++) store<f32>(p + (<usize>i << 2), rng.uniform(-12, 12));
}

type Unary = (y: usize, x: usize, n: i32) => void;

function checkUnary(name: string, f: Unary, ref: Unary, exact: bool, seed: u32): void {
  const rng = new Rng(seed);
  for (let i = 0; i < LENGTHS.length; i++) {
    const n = LENGTHS[i];
    const mis = i % 4;
    const x = allocF32(n, mis), x2 = allocF32(n, mis), y = allocF32(n, mis), yRef = allocF32(n, mis);
    if (n >= 64) fillSpecial(x, n, rng);
    else fillUniform(x, n, rng, -8, 8);
    copyF32(x2, x, n);
    f(y, x, n);
    ref(yRef, x, n);
    f(x2, x2, n); // in place
    const what = name + " n=" + n.toString() + (mis ? " unaligned" : "");
    if (exact) {
      expectEqual(what, y, yRef, n);
    } else {
      expectClose(what, y, yRef, n, 1e-30, ACT_RTOL);
    }
    expectEqual(what + " in place", x2, y, n);
    freeAll();
  }
}

describe("activations", () => {
  it("relu", () => {
    checkUnary("relu", relu, reluScalar, true, 1);
  });
  it("gelu (erf form)", () => {
    checkUnary("gelu", gelu, geluScalar, false, 2);
  });
  it("geluTanh", () => {
    checkUnary("geluTanh", geluTanh, geluTanhScalar, false, 3);
  });
  it("silu", () => {
    checkUnary("silu", silu, siluScalar, false, 4);
  });
  it("FFN-sized activations (128 x 3072)", () => {
    const n = 128 * 3072;
    const rng = new Rng(5);
    const x = allocF32(n), y = allocF32(n), yRef = allocF32(n);
    fillUniform(x, n, rng, -6, 6);
    relu(y, x, n);
    reluScalar(yRef, x, n);
    expectEqual("relu 128x3072", y, yRef, n);
    gelu(y, x, n);
    geluScalar(yRef, x, n);
    expectClose("gelu 128x3072", y, yRef, n, 1e-30, ACT_RTOL);
    geluTanh(y, x, n);
    geluTanhScalar(yRef, x, n);
    expectClose("geluTanh 128x3072", y, yRef, n, 1e-30, ACT_RTOL);
    silu(y, x, n);
    siluScalar(yRef, x, n);
    expectClose("silu 128x3072", y, yRef, n, 1e-30, ACT_RTOL);
    freeAll();
  });
});

describe("add, scale, addBias, embedGather", () => {
  it("add (and y aliasing a or b)", () => {
    const rng = new Rng(10);
    for (let i = 0; i < LENGTHS.length; i++) {
      const n = LENGTHS[i];
      const mis = (i + 1) % 4;
      const a = allocF32(n, mis), b = allocF32(n, mis), y = allocF32(n, mis), yRef = allocF32(n, mis);
      const a2 = allocF32(n, mis), b2 = allocF32(n, mis);
      fillUniform(a, n, rng, -5, 5);
      fillUniform(b, n, rng, -5, 5);
      copyF32(a2, a, n);
      copyF32(b2, b, n);
      add(y, a, b, n);
      addScalar(yRef, a, b, n);
      expectEqual("add n=" + n.toString(), y, yRef, n);
      add(a2, a2, b, n);
      expectEqual("add y=a n=" + n.toString(), a2, yRef, n);
      add(b2, a, b2, n);
      expectEqual("add y=b n=" + n.toString(), b2, yRef, n);
      freeAll();
    }
  });
  it("scale", () => {
    const rng = new Rng(11);
    for (let i = 0; i < LENGTHS.length; i++) {
      const n = LENGTHS[i];
      const x = allocF32(n, i % 4), y = allocF32(n, i % 4), yRef = allocF32(n, i % 4);
      fillUniform(x, n, rng, -5, 5);
      scale(y, x, -0.125, n);
      scaleScalar(yRef, x, -0.125, n);
      expectEqual("scale n=" + n.toString(), y, yRef, n);
      freeAll();
    }
  });
  it("addBias on (T, C) for awkward C and C = 768", () => {
    const rng = new Rng(12);
    const Cs: i32[] = [1, 3, 5, 7, 17, 33, 768];
    for (let i = 0; i < Cs.length; i++) {
      const T = 5, C = Cs[i];
      const y = allocF32(T * C, i % 4), yRef = allocF32(T * C, i % 4), b = allocF32(C, (i + 1) % 4);
      fillUniform(y, T * C, rng, -3, 3);
      fillUniform(b, C, rng, -3, 3);
      copyF32(yRef, y, T * C);
      addBias(y, b, T, C);
      addBiasScalar(yRef, b, T, C);
      expectEqual("addBias C=" + C.toString(), y, yRef, T * C);
      freeAll();
    }
  });
  it("embedGather from a (V, C) table, including the first and last rows", () => {
    const rng = new Rng(13);
    const Cs: i32[] = [1, 5, 17, 768];
    for (let i = 0; i < Cs.length; i++) {
      const V = 50, T = 7, C = Cs[i];
      const table = allocF32(V * C, i % 4), y = allocF32(T * C, (i + 1) % 4), yRef = allocF32(T * C, (i + 1) % 4);
      const ids = allocF32(T); // i32[T]
      fillUniform(table, V * C, rng, -1, 1);
      for (let t = 0; t < T; t++) store<i32>(ids + (<usize>t << 2), t == 0 ? 0 : t == 1 ? V - 1 : <i32>(rng.next() % <u32>V));
      embedGather(y, table, ids, T, C);
      embedGatherScalar(yRef, table, ids, T, C);
      expectEqual("embedGather C=" + C.toString(), y, yRef, T * C);
      // and the reference really is the table row
      expectEqual("embedGather row 1 = table[V-1]", yRef + (<usize>C << 2), table + (<usize>((V - 1) * C) << 2), C);
      freeAll();
    }
  });
});
