// layerNorm / rmsNorm vs their scalar twins: awkward C, every affine combination, y aliasing x, and
// rows with a large common offset (a one-pass E[x²] - E[x]² variance would lose every digit there).
//
// Tolerance: outputs are O(1) (normalised, times w ∈ U(-2, 2), plus b). The row statistics are sums
// of C terms in different orders: mean error ~ ε·√C·|x| relative to the row's spread, so
// atol = NORM_C·ε·√C·(1 + |offset| / spread), rtol = 4ε. NORM_C = 1 (worst measured: 0.6 of it, with
// offset 1000 where the f32 inputs themselves carry 6e-5 steps; 0.45 of it for rmsNorm).
import { layerNorm, layerNormScalar, rmsNorm, rmsNormScalar } from "../kernels/norm";
import { allocF32, copyF32, expectClose, fillUniform, freeAll, EPS, Rng } from "./helpers";

const NORM_C: f32 = 1;

function checkLayerNorm(T: i32, C: i32, affine: i32, offset: f32, alias: bool, misalign: i32, seed: u32, spread: f32 = 1): void {
  const rng = new Rng(seed);
  const x = allocF32(T * C, misalign);
  const x2 = allocF32(T * C, misalign);
  const w = affine & 1 ? allocF32(C, misalign) : 0;
  const b = affine & 2 ? allocF32(C, misalign) : 0;
  const y = alias ? x2 : allocF32(T * C, misalign);
  const yRef = allocF32(T * C, misalign);
  fillUniform(x, T * C, rng, offset - spread, offset + spread);
  if (w) fillUniform(w, C, rng, -2, 2);
  if (b) fillUniform(b, C, rng, -1, 1);
  copyF32(x2, x, T * C);
  layerNorm(y, x2, w, b, T, C, 1e-5);
  layerNormScalar(yRef, x, w, b, T, C, 1e-5);
  const atol = NORM_C * EPS * Mathf.sqrt(<f32>C) * (1 + Mathf.abs(offset) / (0.577 * spread)); // 0.577·spread: std of x
  const name = "layerNorm T=" + T.toString() + " C=" + C.toString() + (w ? " w" : "") + (b ? " b" : "") +
    " x in " + offset.toString() + " ± " + spread.toString() + (alias ? " in-place" : "") + (misalign ? " unaligned" : "");
  expectClose(name, y, yRef, T * C, atol, 4 * EPS);
  freeAll();
}

function checkRmsNorm(T: i32, C: i32, withW: bool, alias: bool, misalign: i32, seed: u32, range: f32 = 3): void {
  const rng = new Rng(seed);
  const x = allocF32(T * C, misalign);
  const x2 = allocF32(T * C, misalign);
  const w = withW ? allocF32(C, misalign) : 0;
  const y = alias ? x2 : allocF32(T * C, misalign);
  const yRef = allocF32(T * C, misalign);
  fillUniform(x, T * C, rng, -range, range);
  if (w) fillUniform(w, C, rng, -2, 2);
  copyF32(x2, x, T * C);
  rmsNorm(y, x2, w, T, C, 1e-6);
  rmsNormScalar(yRef, x, w, T, C, 1e-6);
  const atol = NORM_C * EPS * Mathf.sqrt(<f32>C);
  const name = "rmsNorm T=" + T.toString() + " C=" + C.toString() + (w ? " w" : "") + (alias ? " in-place" : "") +
    " |x| < " + range.toString();
  expectClose(name, y, yRef, T * C, atol, 4 * EPS);
  freeAll();
}

describe("layerNorm", () => {
  it("awkward C, every affine combination, aligned and not", () => {
    const Cs: i32[] = [1, 2, 3, 4, 5, 7, 17, 33, 100];
    let seed: u32 = 1;
    for (let i = 0; i < Cs.length; i++) {
      for (let affine = 0; affine < 4; affine++) {
        checkLayerNorm(3, Cs[i], affine, 0, false, (i + affine) % 4, seed++);
      }
    }
  });
  it("in place (y = x)", () => {
    checkLayerNorm(5, 17, 3, 0, true, 1, 50);
    checkLayerNorm(4, 768, 3, 0, true, 0, 51);
  });
  it("large common offset (two-pass variance)", () => {
    checkLayerNorm(8, 768, 3, 1000, false, 0, 60);
    checkLayerNorm(3, 33, 1, -300, false, 2, 61);
  });
  it("tiny rows, where eps dominates the variance", () => {
    checkLayerNorm(4, 33, 3, 0, false, 1, 65, 1e-3);
    checkLayerNorm(2, 768, 0, 0, false, 0, 66, 1e-3);
  });
  it("OPT-125M shapes: T = 1 and T = 128, C = 768", () => {
    checkLayerNorm(1, 768, 3, 0, false, 0, 70);
    checkLayerNorm(128, 768, 3, 0.5, false, 0, 71);
  });
});

describe("rmsNorm", () => {
  it("awkward C, with and without w", () => {
    const Cs: i32[] = [1, 3, 4, 5, 7, 17, 33];
    let seed: u32 = 100;
    for (let i = 0; i < Cs.length; i++) {
      checkRmsNorm(3, Cs[i], true, false, i % 4, seed++);
      checkRmsNorm(3, Cs[i], false, false, (i + 1) % 4, seed++);
    }
  });
  it("in place and C = 768 rows", () => {
    checkRmsNorm(5, 33, true, true, 1, 120);
    checkRmsNorm(128, 768, true, false, 0, 121);
    checkRmsNorm(1, 768, false, true, 0, 122);
  });
  it("tiny rows, where eps dominates the mean square", () => {
    checkRmsNorm(4, 33, true, false, 1, 130, 1e-3);
    checkRmsNorm(2, 768, false, false, 0, 131, 1e-3);
  });
});
