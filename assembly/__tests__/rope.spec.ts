// rope vs ropeScalar, and both against the rotation written out in f64: awkward head sizes (D/2 not
// a multiple of 4: D = 2, 6, 10, 34), head counts 1, 3, 9, one and several rows, unaligned x and cs,
// real angles (LLaMA's θ = 10000 frequencies at positions past..past+rows), and LLaMA's D = 64, 128.
//
// Tolerance: the SIMD kernel and its twin round the same two products and one sum in the same order:
// bitwise equal. Against f64: each output is a·c ∓ b·s with |c|, |s| ≤ 1, three roundings, so
// atol = ROPE_C·ε·(|a| + |b|) ≤ ROPE_C·ε·2·max|x| with max|x| = 4 here, rtol = 0; ROPE_C = 1
// (worst measured: 0.5 of it, one ulp of an output near 8). A wrong pair, sign or angle costs ~|x|.
import { rope, ropeScalar } from "../kernels/rope";
import { allocF32, copyF32, expectClose, expectEqual, fillConst, fillUniform, freeAll, EPS, Rng } from "./helpers";

const ROPE_C: f32 = 1;
const X_MAX: f32 = 4;

/** cs rows for positions past..past+rows: cos then sin of pos·θ^(-2i/D), i in [0, D/2). */
function fillAngles(cs: usize, rows: i32, D: i32, past: i32): void {
  const half = D >> 1;
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < half; i++) {
      const invFreq = Math.pow(10000.0, -2.0 * <f64>i / <f64>D);
      const a = <f64>(past + r) * invFreq;
      store<f32>(cs + (<usize>(r * D + i) << 2), <f32>Math.cos(a));
      store<f32>(cs + (<usize>(r * D + half + i) << 2), <f32>Math.sin(a));
    }
  }
}

/** The rotation written out in f64 from the definition, into y (not in place). */
function referenceRope(y: usize, x: usize, cs: usize, rows: i32, H: i32, D: i32): void {
  const half = D >> 1;
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < half; i++) {
        const ia = (r * H + h) * D + i, ib = ia + half;
        const a = <f64>load<f32>(x + (<usize>ia << 2)), b = <f64>load<f32>(x + (<usize>ib << 2));
        const c = <f64>load<f32>(cs + (<usize>(r * D + i) << 2)), s = <f64>load<f32>(cs + (<usize>(r * D + half + i) << 2));
        store<f32>(y + (<usize>ia << 2), <f32>(a * c - b * s));
        store<f32>(y + (<usize>ib << 2), <f32>(b * c + a * s));
      }
    }
  }
}

/** randomAngles: cs filled with arbitrary values in [-1, 1) (not a rotation: catches swapped cos/sin). */
function check(rows: i32, H: i32, D: i32, past: i32, randomAngles: bool, misX: i32, misCs: i32, seed: u32): void {
  const rng = new Rng(seed);
  const n = rows * H * D;
  const x = allocF32(n, misX), x0 = allocF32(n, misX), xRef = allocF32(n, misX), xPlain = allocF32(n, misX);
  const cs = allocF32(rows * D, misCs);
  fillUniform(x0, n, rng, -X_MAX, X_MAX);
  if (randomAngles) fillUniform(cs, rows * D, rng, -1, 1);
  else fillAngles(cs, rows, D, past);
  copyF32(x, x0, n);
  copyF32(xRef, x0, n);
  rope(x, cs, rows, H, D);
  ropeScalar(xRef, cs, rows, H, D);
  referenceRope(xPlain, x0, cs, rows, H, D);
  const name = "rope rows=" + rows.toString() + " H=" + H.toString() + " D=" + D.toString() + " past=" + past.toString() +
    (randomAngles ? " random cs" : "") + (misX || misCs ? " unaligned" : "");
  expectEqual(name, x, xRef, n);
  const atol = ROPE_C * EPS * 2 * X_MAX;
  expectClose(name + " vs plain", x, xPlain, n, atol, 0);
  freeAll();
}

describe("rope", () => {
  it("awkward D (D/2 = 1, 3, 4, 5, 17), H = 1, 3, 9, rows 1 and 5, unaligned", () => {
    const Ds: i32[] = [2, 6, 8, 10, 34];
    const Hs: i32[] = [1, 3, 9];
    let seed: u32 = 1;
    for (let i = 0; i < Ds.length; i++) {
      for (let j = 0; j < Hs.length; j++) {
        check(1, Hs[j], Ds[i], 7, false, (i + j) % 4, j % 4, seed++);
        check(5, Hs[j], Ds[i], 0, false, (i + j + 1) % 4, (j + 2) % 4, seed++);
        check(5, Hs[j], Ds[i], 3, true, (i + j + 2) % 4, (j + 1) % 4, seed++);
      }
    }
  });
  it("position 0 is the identity", () => {
    const rows = 1, H = 3, D = 34, n = rows * H * D;
    const rng = new Rng(50);
    const x = allocF32(n, 1), x0 = allocF32(n, 1), cs = allocF32(D, 2);
    fillUniform(x0, n, rng, -X_MAX, X_MAX);
    copyF32(x, x0, n);
    fillAngles(cs, rows, D, 0);
    rope(x, cs, rows, H, D);
    expectEqual("rope at position 0", x, x0, n);
    freeAll();
  });
  it("rows = 0 and H = 0 touch nothing", () => {
    const x = allocF32(64);
    fillConst(x, 64, -5.5);
    const cs = allocF32(64);
    rope(x, cs, 0, 2, 32);
    rope(x, cs, 2, 0, 32);
    const want = allocF32(64);
    fillConst(want, 64, -5.5);
    expectEqual("rope on nothing", x, want, 64);
    freeAll();
  });
});

describe("rope, LLaMA shapes", () => {
  it("D = 64 (SmolLM, TinyLlama) and D = 128 (LLaMA-7B): prompt and decode", () => {
    check(5, 9, 64, 0, false, 0, 0, 60);
    check(1, 9, 64, 511, false, 0, 0, 61);
    check(5, 3, 128, 100, false, 1, 3, 62);
    check(1, 32, 128, 4095, false, 0, 0, 63);
    check(64, 9, 64, 0, false, 0, 0, 64);
  });
});
