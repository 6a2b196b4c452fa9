// The shared vector maths on its own, in ulps: expV against the f64 exp, erfcV against the scalar
// erfcf it vectorises, across their whole ranges and at every edge. The half-float conversions
// exactly: f32ToHalfBits and its four-lane f32ToHalfV against a rounding written out in f64
// (refHalfBits), every finite half widened by halfToF32 / halfScalar against the f64 value of its
// fields, and the round trip.
//
// Bounds: Cephes' expf polynomial is good to ~1 ulp; with fused or split multiply-adds we allow 2
// (worst measured: 0.98). erfcV and erfcf run the same rational approximations with different exp
// and rounding: 6 ulps (worst measured: 4.0, near x = 2.5 where two exps multiply)
// (results below FLT_MIN, erfc(x > ~9.2), owe only an absolute FLT_MIN: expV flushes subnormals).
import { erfcf, erfcV, expV, f32ToHalfBits, f32ToHalfV, halfScalar, halfToF32 } from "../kernels/vecmath";
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

/**
 * The nearest half to x, ties to even, by arithmetic rather than bit tricks: the half grid around
 * |x| has spacing 2^(e-10) with e = x's binary exponent (at least -14, the subnormal halves' spacing
 * stays 2^-24); n = |x| / spacing is exact in f64, rounded by hand; the bits are (e + 14)·1024 + n
 * (a carry of n to 2048 lands on the next exponent). |x| ≥ 65520 (halfway past 65504) is inf.
 */
function refHalfBits(x: f32): u32 {
  const u = reinterpret<u32>(x);
  const sign = (u >> 16) & 0x8000;
  if (isNaN(x)) return sign | 0x7e00;
  const a = Math.abs(<f64>x);
  if (a >= 65520) return sign | 0x7c00;
  const e = max<i32>(<i32>((u >> 23) & 0xff) - 127, -14);
  const n0 = Math.floor(a / Math.pow(2, <f64>(e - 10)));
  const r = a / Math.pow(2, <f64>(e - 10)) - n0;
  let n = <i32>n0;
  if (r > 0.5 || (r == 0.5 && (n & 1) != 0)) n++;
  return sign | <u32>((e + 14) * 1024 + n);
}

/** Lane l of an i32x4. */
function lane(v: v128, l: i32): u32 {
  return l == 0 ? i32x4.extract_lane(v, 0) : l == 1 ? i32x4.extract_lane(v, 1) : l == 2 ? i32x4.extract_lane(v, 2) : i32x4.extract_lane(v, 3);
}

/** f32ToHalfBits, f32ToHalfV (in every lane position) and refHalfBits agree on x; the count of failures. */
function halfAgree(x: f32, what: string): i32 {
  const want = refHalfBits(x);
  const s = <u32>f32ToHalfBits(x);
  const y = reinterpret<f32>(0x3c00); // a filler lane
  const v = f32ToHalfV(f32x4(x, y, -x, x));
  const v2 = f32ToHalfV(f32x4(y, y, y, x));
  const ok = s == want && lane(v, 0) == want && lane(v, 3) == want && lane(v2, 3) == want && lane(v, 2) == (want ^ 0x8000);
  if (!ok) {
    expect<u32>(s).toBe(want, what + ": f32ToHalfBits(" + x.toString() + ") (bits 0x" + reinterpret<u32>(x).toString(16) + ")");
    expect<u32>(lane(v, 0)).toBe(want, what + ": f32ToHalfV(" + x.toString() + ")");
    expect<u32>(lane(v, 2)).toBe(want ^ 0x8000, what + ": f32ToHalfV(-" + x.toString() + ")");
  }
  return ok ? 0 : 1;
}

describe("f32 -> f16 (f32ToHalfBits, f32ToHalfV), round to nearest even", () => {
  it("every edge: ±0, subnormal halves and their halfway points, the normal range's ends, 65504..65520, inf, NaN", () => {
    const edges: f32[] = [
      0, 5.9604645e-8 /* 2^-24, the smallest subnormal */, 2.9802322e-8 /* its half: a tie to 0 */,
      8.940697e-8 /* 1.5·2^-24: a tie up to 2 */, 6.097555e-5 /* the largest subnormal */, 6.1035156e-5 /* 2^-14 */,
      6.1002374e-5 /* between the largest subnormal and 2^-14 */, 1, 1.0004883 /* 1 + 2^-11: tie to 1 */,
      1.0014648 /* 1 + 3·2^-11: tie up */, 0.33333334, 2048, 2049 /* tie to 2048 */, 2051 /* tie to 2052 */,
      65504, 65519.996, 65520 /* halfway past the largest half: inf */, 1e5, 3.4028235e38, Infinity,
      1e-30, 1.1754944e-38 /* FLT_MIN */, 1.4e-45 /* the smallest f32 subnormal */,
    ];
    let bad = 0;
    for (let i = 0; i < edges.length; i++) {
      // the edge, and 3 ulps (of f32) on either side of it, both signs
      for (let k = -3; k <= 3; k++) {
        const b = <i32>reinterpret<u32>(edges[i]) + k;
        if (b < 0 || b > 0x7f800000) continue;
        const x = reinterpret<f32>(<u32>b);
        bad += halfAgree(x, "edge");
        bad += halfAgree(-x, "edge");
      }
    }
    bad += halfAgree(NaN, "NaN");
    bad += halfAgree(-NaN, "-NaN");
    expect<i32>(bad).toBe(0);
    // the named results, spelled out
    expect<u32>(<u32>f32ToHalfBits(-0.0)).toBe(0x8000);
    expect<u32>(<u32>f32ToHalfBits(5.9604645e-8)).toBe(1);
    expect<u32>(<u32>f32ToHalfBits(2.9802322e-8)).toBe(0);
    expect<u32>(<u32>f32ToHalfBits(8.940697e-8)).toBe(2);
    expect<u32>(<u32>f32ToHalfBits(65504)).toBe(0x7bff);
    expect<u32>(<u32>f32ToHalfBits(65519.996)).toBe(0x7bff);
    expect<u32>(<u32>f32ToHalfBits(65520)).toBe(0x7c00);
    expect<u32>(<u32>f32ToHalfBits(-1e5)).toBe(0xfc00);
  });
  it("one f32 bit pattern in 4093, over all of them (both signs, NaNs included)", () => {
    let bad = 0;
    for (let b: u64 = 0; b < 0x100000000; b += 4093) {
      bad += halfAgree(reinterpret<f32>(<u32>b), "sweep");
      if (bad > 8) break;
    }
    expect<i32>(bad).toBe(0);
  });
});

describe("f16 -> f32 (halfToF32, halfScalar)", () => {
  it("all 63488 finite halves: the f64 value of their fields, bit for bit alike; f32ToHalfBits gives the half back", () => {
    let bad = 0;
    for (let h: u32 = 0; h < 0x10000; h += 4) {
      const v = halfToF32(i32x4(<i32>(h << 16) >> 16, <i32>((h + 1) << 16) >> 16, <i32>((h + 2) << 16) >> 16, <i32>((h + 3) << 16) >> 16));
      for (let l = 0; l < 4; l++) {
        const x = h + <u32>l;
        const exp = (x >> 10) & 31, mant = x & 0x3ff;
        if (exp == 31) continue; // inf and NaN: not widened as such (next test)
        const mag: f64 = exp == 0 ? <f64>mant * Math.pow(2, -24) : (1 + <f64>mant / 1024) * Math.pow(2, <f64>exp - 15);
        const want = (x & 0x8000) != 0 ? -mag : mag;
        const got = reinterpret<f32>(lane(v, l));
        const one = halfScalar(x);
        let ok = <f64>got == want && reinterpret<u32>(got) == reinterpret<u32>(one);
        // the sign of zero, and the round trip
        if (ok && want == 0) ok = (reinterpret<u32>(got) >> 31) == (x >> 15);
        if (ok) ok = <u32>f32ToHalfBits(got) == x;
        if (!ok) {
          bad++;
          if (bad < 4) expect<f64>(<f64>got).toBe(want, "half 0x" + x.toString(16) + " scalar " + one.toString());
        }
      }
    }
    expect<i32>(bad).toBe(0);
  });
  it("±inf and NaN halves read as finite values from ±65536 up (the exponent one past the largest; no special case)", () => {
    const v = halfToF32(i32x4(0x7c00, <i32>0xfffffc00, 0x7e00, 0x7bff));
    expect<f32>(reinterpret<f32>(lane(v, 0))).toBe(65536);
    expect<f32>(reinterpret<f32>(lane(v, 1))).toBe(-65536);
    expect<f32>(reinterpret<f32>(lane(v, 2))).toBe(98304);
    expect<f32>(reinterpret<f32>(lane(v, 3))).toBe(65504);
    expect<f32>(halfScalar(0xfc00)).toBe(-65536);
  });
});
