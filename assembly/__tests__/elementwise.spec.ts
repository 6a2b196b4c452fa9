// Element-wise kernels vs their scalar twins on awkward lengths, in place and unaligned, plus the
// boundaries of erfc's piecewise approximation and non-finite inputs; swiglu also against silu·up
// and against its formula in f64, with extreme gates (±80, 0, past exp's range, ±inf, NaN).
//
// Tolerance: relu / add / scale / addBias / embedGather do the same f32 operations on both sides:
// bitwise equal. gelu / geluTanh / silu / swiglu evaluate the same formula with the vector exp
// (≤ ~2 ulp) and fused or split multiply-adds: rtol = 8ε (≈ 1e-6; worst measured 2.7ε), atol = 1e-30
// for values that underflow. swiglu = silu then ·up is bitwise (same build, same operations). Against
// f64: e^-g is ≤ 2 ulp for the exact f32 g, then 1 +, ÷ and · round once each: rtol = 8ε as well
// (worst measured 1.8ε); atol = 1e-30 covers gates just past -88.72, where f32 e^-g overflows
// and the kernels return ±0 for a true |y| < 1e-36.
import {
  add, addBias, addBiasScalar, addScalar, embedGather, embedGatherScalar, gelu, geluScalar, geluTanh,
  geluTanhScalar, relu, reluScalar, scale, scaleScalar, silu, siluScalar, swiglu, swigluScalar,
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

/** Gates at the edges: ±80, zeros, around exp's range (±87.34, ±88.72), huge, tiny, non-finite. */
function fillGates(p: usize, n: i32, rng: Rng): void {
  const specials: f32[] = [
    80, -80, 0, -0, -87.3, -87.4, -88.7, -88.8, 87.4, 88.8, -100, -1e4, -1e30, 1e30, 1e-30, -1e-30,
    -3.4e38, 3.4e38, Infinity, -Infinity, NaN, 1, -1, 20, -20,
  ];
  let i = 0;
  for (; i < specials.length && i < n; i++) store<f32>(p + (<usize>i << 2), specials[i]);
  for (; i < n; i++) store<f32>(p + (<usize>i << 2), rng.uniform(-12, 12));
}

/** y = gate / (1 + e^-gate) · up in f64, rounded once to f32. */
function swigluPlain(y: usize, gate: usize, up: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const g = <f64>load<f32>(gate + o);
    store<f32>(y + o, <f32>(g / (1.0 + Math.exp(-g)) * <f64>load<f32>(up + o)));
  }
}

function checkSwiglu(n: i32, mis: i32, seed: u32): void {
  const rng = new Rng(seed);
  const g = allocF32(n, mis), u = allocF32(n, (mis + 1) % 4);
  const y = allocF32(n, (mis + 2) % 4), yRef = allocF32(n, mis), yPlain = allocF32(n, mis);
  const yTwoPass = allocF32(n, mis), yTwoPassScalar = allocF32(n, mis);
  const g2 = allocF32(n, mis), u2 = allocF32(n, (mis + 1) % 4);
  if (n >= 32) fillGates(g, n, rng);
  else fillUniform(g, n, rng, -10, 10);
  fillUniform(u, n, rng, -3, 3);
  if (n >= 32) store<f32>(u + 4, 1e30); // a huge up against a gate of 0: 0, not NaN
  copyF32(g2, g, n);
  copyF32(u2, u, n);
  swiglu(y, g, u, n);
  swigluScalar(yRef, g, u, n);
  swigluPlain(yPlain, g, u, n);
  // The two-pass form the fused kernel replaces: silu(gate), then ·up.
  silu(yTwoPass, g, n);
  siluScalar(yTwoPassScalar, g, n);
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(yTwoPass + o, load<f32>(yTwoPass + o) * load<f32>(u + o));
    store<f32>(yTwoPassScalar + o, load<f32>(yTwoPassScalar + o) * load<f32>(u + o));
  }
  const what = "swiglu n=" + n.toString() + (mis ? " unaligned" : "");
  expectClose(what, y, yRef, n, 1e-30, ACT_RTOL);
  expectEqual(what + " = silu(gate)·up", y, yTwoPass, n);
  expectEqual(what + " scalar = siluScalar(gate)·up", yRef, yTwoPassScalar, n);
  expectClose(what + " vs f64", y, yPlain, n, 1e-30, ACT_RTOL);
  expectClose(what + " scalar vs f64", yRef, yPlain, n, 1e-30, ACT_RTOL);
  swiglu(g2, g2, u, n); // y = gate
  expectEqual(what + " in place over gate", g2, y, n);
  swiglu(u2, g, u2, n); // y = up
  expectEqual(what + " in place over up", u2, y, n);
  freeAll();
}

describe("swiglu", () => {
  it("awkward lengths, unaligned, against the scalar twin, silu·up and f64", () => {
    for (let i = 0; i < LENGTHS.length; i++) checkSwiglu(LENGTHS[i], i % 4, 20 + i);
  });
  it("extreme gates: the limits silu(g)·up tends to", () => {
    const gates: f32[] = [80, -80, 0, -1e30, -200, 1e30];
    const n = gates.length;
    const g = allocF32(n, 1), u = allocF32(n, 2), y = allocF32(n, 3), yRef = allocF32(n, 3);
    for (let i = 0; i < n; i++) {
      store<f32>(g + (<usize>i << 2), gates[i]);
      store<f32>(u + (<usize>i << 2), 2.5);
    }
    swiglu(y, g, u, n);
    swigluScalar(yRef, g, u, n);
    for (let k = 0; k < 2; k++) {
      const p = k == 0 ? y : yRef;
      const who = k == 0 ? "swiglu" : "swigluScalar";
      expect<f32>(load<f32>(p)).toBe(200, who + "(80)·2.5"); // e^-80 vanishes next to 1
      const tiny = load<f32>(p + 4); // -80 / (1 + e^80) · 2.5 ≈ -3.6e-33: small, negative, finite
      expect<bool>(tiny < 0 && tiny > -1e-32).toBe(true, who + "(-80)·2.5 = " + tiny.toString());
      expect<f32>(load<f32>(p + 8)).toBe(0, who + "(0)");
      expect<bool>(load<f32>(p + 12) == 0 && load<f32>(p + 16) == 0).toBe(true, who + " of very negative gates is 0");
      expect<f32>(load<f32>(p + 20)).toBe(2.5e30, who + "(1e30)·2.5");
    }
    freeAll();
  });
  it("LLaMA-sized MLP (64 x 1536)", () => {
    checkSwiglu(64 * 1536, 0, 30);
  });
});
