// The shared vector maths on its own, in ulps: expV against the f64 exp, erfcV against the scalar
// erfcf it vectorises, across their whole ranges and at every edge.
//
// Bounds: Cephes' expf polynomial is good to ~1 ulp; with fused or split multiply-adds we allow 2
// (worst measured: 0.98). erfcV and erfcf run the same rational approximations with different exp
// and rounding: 6 ulps (worst measured: 4.0, near x = 2.5 where two exps multiply)
// (results below FLT_MIN, erfc(x > ~9.2), owe only an absolute FLT_MIN: expV flushes subnormals).
import { erfcf, erfcV, expV } from "../kernels/vecmath";
import { Rng } from "./helpers";

const EXP_ULPS: f64 = 2;
const ERFC_ULPS: f64 = 6;

/** |got - want| in units of the f32 ulp at want (want finite, nonzero, normal). */
function ulps(got: f32, want: f64): f64 {
  const e = Math.floor(Math.log2(Math.abs(want)));
  return Math.abs(<f64>got - want) / Math.pow(2, e - 23);
}

function exp4(a: f32, b: f32, c: f32, d: f32): v128 {
  return expV(f32x4(a, b, c, d));
}

describe("expV", () => {
  it("within 2 ulps of exp over [-87.3, 88.7]", () => {
    const rng = new Rng(7);
    let worst: f64 = 0;
    let at: f32 = 0;
    for (let i = 0; i < 200000; i++) {
      // half dense on [-10, 10] (softmax's range), half over the whole domain
      const x0 = i & 1 ? rng.uniform(-87.3, 88.7) : rng.uniform(-10, 10);
      const x1 = rng.uniform(-1, 1), x2 = rng.uniform(-87.3, 0), x3 = <f32>(i - 100000) * 1e-6;
      const y = exp4(x0, x1, x2, x3);
      const xs: f32[] = [x0, x1, x2, x3];
      for (let l = 0; l < 4; l++) {
        const yl = l == 0 ? f32x4.extract_lane(y, 0) : l == 1 ? f32x4.extract_lane(y, 1) : l == 2 ? f32x4.extract_lane(y, 2) : f32x4.extract_lane(y, 3);
        const u = ulps(yl, Math.exp(<f64>xs[l]));
        if (u > worst) {
          worst = u;
          at = xs[l];
        }
      }
    }
    expect<bool>(worst <= EXP_ULPS).toBe(true, "expV worst " + worst.toString() + " ulps at x = " + at.toString());
  });
  it("edges: exact 1 at 0, 0 below ln(FLT_MIN), +inf above ln(FLT_MAX), NaN stays NaN", () => {
    const y = exp4(0, -87.5, 89, -Infinity);
    expect<f32>(f32x4.extract_lane(y, 0)).toBe(1);
    expect<f32>(f32x4.extract_lane(y, 1)).toBe(0);
    expect<f32>(f32x4.extract_lane(y, 2)).toBe(Infinity);
    expect<f32>(f32x4.extract_lane(y, 3)).toBe(0);
    const z = exp4(Infinity, NaN, 88.7, -87.3);
    expect<f32>(f32x4.extract_lane(z, 0)).toBe(Infinity);
    expect<bool>(isNaN(f32x4.extract_lane(z, 1))).toBe(true, "exp(NaN)");
    expect<bool>(ulps(f32x4.extract_lane(z, 2), Math.exp(<f64><f32>88.7)) <= EXP_ULPS).toBe(true, "exp(88.7)");
    expect<bool>(ulps(f32x4.extract_lane(z, 3), Math.exp(<f64><f32>-87.3)) <= EXP_ULPS).toBe(true, "exp(-87.3)");
  });
});

describe("erfcV", () => {
  it("within 6 ulps of erfcf on [-10, 10] and at every region edge", () => {
    const rng = new Rng(8);
    const edges: f32[] = [0, 0.25, 0.84375, 1.25, 2.857142857, 6, 9, 10];
    let worst: f64 = 0;
    let at: f32 = 0;
    for (let i = 0; i < 200000; i++) {
      let x: f32;
      if (i < 16 * edges.length) {
        const e = edges[i >> 4];
        const k = (i & 15) - 8; // a few ulps on either side, both signs
        x = reinterpret<f32>(reinterpret<i32>(e) + k);
        if (i & 1) x = -x;
      } else {
        x = rng.uniform(-10, 10);
      }
      const y = f32x4.extract_lane(erfcV(f32x4.splat(x)), 0);
      const want = erfcf(x);
      if (Mathf.abs(want) < 1.1754944e-38) {
        // subnormal results: expV flushes e^x below FLT_MIN to 0, so only the absolute size is owed
        expect<bool>(Mathf.abs(y - want) <= 1.1754944e-38).toBe(true, "erfc(" + x.toString() + ") = " + y.toString());
        continue;
      }
      const u = ulps(y, <f64>want);
      if (u > worst) {
        worst = u;
        at = x;
      }
    }
    expect<bool>(worst <= ERFC_ULPS).toBe(true, "erfcV worst " + worst.toString() + " ulps at x = " + at.toString());
  });
  it("non-finite: erfc(+inf) = 0, erfc(-inf) = 2, NaN stays NaN; erfc(30) = 0, erfc(-30) = 2", () => {
    const y = erfcV(f32x4(Infinity, -Infinity, NaN, 30));
    expect<f32>(f32x4.extract_lane(y, 0)).toBe(0);
    expect<f32>(f32x4.extract_lane(y, 1)).toBe(2);
    expect<bool>(isNaN(f32x4.extract_lane(y, 2))).toBe(true, "erfc(NaN)");
    expect<f32>(f32x4.extract_lane(y, 3)).toBe(0);
    expect<f32>(f32x4.extract_lane(erfcV(f32x4.splat(-30)), 0)).toBe(2);
  });
});
