// softmax vs softmaxScalar: awkward widths, masks (kept / excluded / everything excluded), y = x.
//
// Tolerance: each probability is e^(x - max) / Σ. The vector exp is within ~2 ulp of Mathf.exp and
// the sums of `cols` terms differ by ~√cols·ε relative, so rtol = SM_C·ε·(4 + √cols) with SM_C = 2
// (worst measured: 0.54 of it, on the 50272-wide rows), atol = 1e-30 (only for values that underflow).
// Excluded entries must be exactly 0.
import { softmax, softmaxScalar } from "../kernels/softmax";
import { allocBytes, allocF32, copyF32, expectAll, expectClose, fillUniform, freeAll, EPS, Rng } from "./helpers";

const SM_C: f32 = 2;

/** maskKind: 0 none, 1 random (~30% excluded), 2 everything excluded, 3 only the last column kept. */
function check(rows: i32, cols: i32, maskKind: i32, alias: bool, misalign: i32, seed: u32): void {
  const rng = new Rng(seed);
  const x = allocF32(rows * cols, misalign);
  const x2 = allocF32(rows * cols, misalign);
  const y = alias ? x2 : allocF32(rows * cols, misalign);
  const yRef = allocF32(rows * cols, misalign);
  let mask: usize = 0;
  if (maskKind) {
    mask = allocBytes(cols) + <usize>misalign;
    for (let c = 0; c < cols; c++) {
      let keep: u8 = 1;
      if (maskKind == 1) keep = rng.uniform(0, 1) < 0.3 ? 0 : <u8>(1 + (rng.next() & 7)); // any nonzero keeps
      if (maskKind == 2) keep = 0;
      if (maskKind == 3) keep = c == cols - 1 ? 1 : 0;
      store<u8>(mask + <usize>c, keep);
    }
  }
  fillUniform(x, rows * cols, rng, -10, 10);
  copyF32(x2, x, rows * cols);
  softmax(y, x2, mask, rows, cols);
  softmaxScalar(yRef, x, mask, rows, cols);
  const name = "softmax " + rows.toString() + "x" + cols.toString() + " mask " + maskKind.toString() +
    (alias ? " in-place" : "") + (misalign ? " unaligned" : "");
  expectClose(name, y, yRef, rows * cols, 1e-30, SM_C * EPS * (4 + Mathf.sqrt(<f32>cols)));
  if (mask) {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        if (load<u8>(mask + <usize>c) == 0) expectAll(name + " excluded", y + ((<usize>r * <usize>cols + <usize>c) << 2), 1, 0);
      }
    }
  }
  // Rows sum to 1 unless everything is excluded.
  for (let r = 0; r < rows; r++) {
    let s: f64 = 0;
    for (let c = 0; c < cols; c++) s += <f64>load<f32>(y + ((<usize>r * <usize>cols + <usize>c) << 2));
    let anyKept = mask == 0;
    for (let c = 0; c < cols; c++) if (mask && load<u8>(mask + <usize>c) != 0) anyKept = true;
    const want: f64 = anyKept ? 1 : 0;
    expect<bool>(Math.abs(s - want) <= <f64>(SM_C * EPS * (4 + Mathf.sqrt(<f32>cols)))).toBe(true, name + " row sum " + s.toString());
  }
  freeAll();
}

describe("softmax", () => {
  it("awkward widths, no mask", () => {
    const Cs: i32[] = [1, 2, 3, 4, 5, 7, 17, 33, 100];
    let seed: u32 = 1;
    for (let i = 0; i < Cs.length; i++) check(3, Cs[i], 0, false, i % 4, seed++);
  });
  it("random masks (nonzero byte = kept)", () => {
    const Cs: i32[] = [1, 3, 5, 7, 17, 33, 129];
    let seed: u32 = 20;
    for (let i = 0; i < Cs.length; i++) check(4, Cs[i], 1, false, i % 4, seed++);
  });
  it("everything excluded gives zeros, no NaN; a single kept column gives 1", () => {
    const Cs: i32[] = [1, 4, 5, 17];
    let seed: u32 = 40;
    for (let i = 0; i < Cs.length; i++) {
      check(2, Cs[i], 2, false, i % 4, seed++);
      check(2, Cs[i], 3, false, i % 4, seed++);
    }
  });
  it("in place (y = x)", () => {
    check(5, 33, 1, true, 1, 60);
    check(3, 17, 0, true, 0, 61);
  });
  it("OPT-125M rows: 12 x 128 attention, 1 x 2048 masked, 2 x 50272 logits", () => {
    check(12, 128, 0, false, 0, 70);
    check(1, 2048, 1, false, 0, 71);
    check(2, 50272, 0, false, 0, 72);
  });
});
