// Shared SIMD helpers for the kernels (not exported from the module).
//   madd(a, b, c)   = a·b + c per lane: one fused f32x4.relaxed_madd in the relaxed build,
//                     f32x4.mul then f32x4.add in the SIMD128 build (same source, chosen at compile time)
//   hsum(v)         = v0 + v1 + v2 + v3
//   sum4(a, b, c, d) = (Σa, Σb, Σc, Σd) as one vector (transpose-and-add)
//   keepMask4(p)    = u8 mask bytes [p, p+4) as i32x4 lanes: all ones where the byte is nonzero
//   halfToF32(h) / halfScalar(h) / f32ToHalfBits(f): IEEE half floats ↔ f32 (finite halves)
//   f32ToHalfV(x)   = f32ToHalfBits on four lanes (i32 lanes holding the 16 bits)
//   expV(x)         = e^x per lane, Cephes expf polynomial, ≤ ~2 ulp; 0 where e^x would be subnormal
//                     (x < -87.3365), +inf past FLT_MAX (x > 88.7228), NaN → NaN
//   erfcf(x)        = scalar complementary error function, a port of Sun/FreeBSD/musl s_erff.c
//   erfcV(x)        = the same piecewise rational approximation, four lanes at once

@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/**
 * The end of a 4-stream matvec step: rows o, o+q, o+2q, o+3q get their bias (if any) and are
 * stored. Shared by every matvec that walks its rows as four long streams.
 */
@inline export function storeRows4(y: usize, b: usize, o: i32, q: i32, s0: f32, s1: f32, s2: f32, s3: f32): void {
  if (b) {
    s0 += load<f32>(b + (<usize>o << 2));
    s1 += load<f32>(b + (<usize>(o + q) << 2));
    s2 += load<f32>(b + (<usize>(o + 2 * q) << 2));
    s3 += load<f32>(b + (<usize>(o + 3 * q) << 2));
  }
  store<f32>(y + (<usize>o << 2), s0);
  store<f32>(y + (<usize>(o + q) << 2), s1);
  store<f32>(y + (<usize>(o + 2 * q) << 2), s2);
  store<f32>(y + (<usize>(o + 3 * q) << 2), s3);
}

@inline export function hsum(v: v128): f32 {
  const s = f32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

@inline export function sum4(a: v128, b: v128, c: v128, d: v128): v128 {
  // ab = (a0+a2, b0+b2, a1+a3, b1+b3), cd likewise, then fold the halves.
  const ab = f32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
  const cd = f32x4.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
  return f32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
}

/** Lanes of u8 mask bytes [p, p+4) as an all-ones/all-zeros i32x4 "kept" mask. */
@inline export function keepMask4(p: usize): v128 {
  const bytes = i32x4.extend_low_i16x8_u(i16x8.extend_low_i8x16_u(v128.load32_zero(p)));
  return v128.not(i32x4.eq(bytes, i32x4.splat(0)));
}

// ---- half floats ---------------------------------------------------------------------------------

export const TWO_112: f32 = 5.192296858534828e33; // 2^112

/**
 * h: 4 halves sign-extended to i32 lanes → their f32 values. Shifted left 13, a lane holds the
 * magnitude bits in place, the sign at bit 31 and copies of it at bits 28-30: clearing those leaves
 * a float whose product with 2^112 is the value, normal and subnormal halves alike, sign included
 * (3 operations; moving the sign apart took 6). Finite halves only.
 */
@inline export function halfToF32(h: v128): v128 {
  const bits = v128.and(i32x4.shl(h, 13), i32x4.splat(0x8fffffff));
  return f32x4.mul(bits, f32x4.splat(TWO_112));
}

@inline export function halfScalar(h: u32): f32 {
  const mag = reinterpret<f32>((h & 0x7fff) << 13) * TWO_112;
  return (h & 0x8000) ? -mag : mag;
}

/** f32 → f16 bits, round to nearest even (±inf past 65504, NaN stays NaN). */
export function f32ToHalfBits(f: f32): u16 {
  const x = reinterpret<u32>(f);
  const sign = (x >> 16) & 0x8000;
  const a = x & 0x7fffffff;
  if (a >= 0x7f800000) return <u16>(sign | (a > 0x7f800000 ? 0x7e00 : 0x7c00));
  if (a >= 0x477ff000) return <u16>(sign | 0x7c00); // rounds past 65504: inf
  if (a < 0x38800000) {
    // subnormal half (or zero): value / 2^-24, rounded to nearest even
    const v = reinterpret<f32>(a) * 16777216.0; // 2^24
    return <u16>(sign | <u32>nearest(v));
  }
  // normal: rebias exponent, round mantissa to 10 bits (nearest even)
  const r = a + 0x0fff + ((a >> 13) & 1) - 0x38000000;
  return <u16>(sign | (r >> 13));
}

/**
 * f32ToHalfBits on four lanes, branch-free: each lane's half in the low 16 bits of an i32 lane
 * (i16x8.narrow_i32x4_u packs two results). Every lane takes both roads and a mask picks one:
 *   normal   (|x| ≥ 2^-14): rebias the exponent and round the mantissa to 10 bits, nearest even,
 *            by adding 0xfff + the lowest kept bit before the shift; a carry moves into the exponent
 *            (65520 and up carry into 0x7c00 = inf, as they should)
 *   subnormal (|x| < 2^-14): |x| + 0.5 puts |x| / 2^-24 in the low mantissa bits, rounded by the f32
 *            addition itself (nearest even); 2^-14 - ε rounds up to 0x400, the smallest normal
 *   |x| ≥ 65536 or inf: 0x7c00; NaN: 0x7e00 (as f32ToHalfBits). The sign is ORed back last.
 */
@inline export function f32ToHalfV(x: v128): v128 {
  const a = v128.and(x, i32x4.splat(0x7fffffff));
  const sign = i32x4.shr_u(v128.andnot(x, i32x4.splat(0x7fffffff)), 16);
  const odd = v128.and(i32x4.shr_u(a, 13), i32x4.splat(1));
  // a - (112 << 23) + 0xfff + odd, with the rebias as a wrapping add
  const normal = i32x4.shr_u(i32x4.add(i32x4.add(a, i32x4.splat(0xc8000fff)), odd), 13);
  const sub = i32x4.sub(f32x4.add(a, f32x4.splat(0.5)), i32x4.splat(0x3f000000));
  let h = v128.bitselect(sub, normal, i32x4.lt_s(a, i32x4.splat(0x38800000)));
  h = v128.bitselect(i32x4.splat(0x7c00), h, i32x4.ge_s(a, i32x4.splat(0x47800000)));
  h = v128.bitselect(i32x4.splat(0x7e00), h, i32x4.gt_s(a, i32x4.splat(0x7f800000)));
  return v128.or(h, sign);
}

// ---- exp ---------------------------------------------------------------------------------------

const EXP_LO: f32 = -87.33654; // ln(FLT_MIN): below, e^x is subnormal and returned as 0
const EXP_HI: f32 = 88.72283; // ln(FLT_MAX): above, +inf

@inline export function expV(x: v128): v128 {
  const xc = f32x4.min(f32x4.max(x, f32x4.splat(EXP_LO)), f32x4.splat(EXP_HI));
  const n = f32x4.nearest(f32x4.mul(xc, f32x4.splat(1.44269504088896341)));
  // r = x - n·ln2 in two steps (Cody–Waite): 0.693359375 is exact in few bits.
  let r = madd(n, f32x4.splat(-0.693359375), xc);
  r = madd(n, f32x4.splat(2.12194440e-4), r);
  let p = f32x4.splat(1.9875691500e-4);
  p = madd(p, r, f32x4.splat(1.3981999507e-3));
  p = madd(p, r, f32x4.splat(8.3334519073e-3));
  p = madd(p, r, f32x4.splat(4.1665795894e-2));
  p = madd(p, r, f32x4.splat(1.6666665459e-1));
  p = madd(p, r, f32x4.splat(5.0000001201e-1));
  const e = f32x4.add(madd(p, f32x4.mul(r, r), r), f32x4.splat(1));
  // 2^n for n in [-126, 128] as two normal halves 2^(n>>1)·2^(n-(n>>1)).
  const ni = i32x4.trunc_sat_f32x4_s(n);
  const n1 = i32x4.shr_s(ni, 1);
  const bias = i32x4.splat(127);
  const y = f32x4.mul(f32x4.mul(e, i32x4.shl(i32x4.add(n1, bias), 23)), i32x4.shl(i32x4.add(i32x4.sub(ni, n1), bias), 23));
  const under = f32x4.lt(x, f32x4.splat(EXP_LO));
  const over = f32x4.gt(x, f32x4.splat(EXP_HI));
  return v128.bitselect(f32x4.splat(Infinity), v128.andnot(y, under), over);
}

// ---- erfc --------------------------------------------------------------------------------------
/*
 * Coefficients and method from FreeBSD /usr/src/lib/msun/src/s_erff.c (as in musl src/math/erff.c):
 * ====================================================
 * Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
 *
 * Developed at SunPro, a Sun Microsystems, Inc. business.
 * Permission to use, copy, modify, and distribute this
 * software is freely granted, provided that this notice
 * is preserved.
 * ====================================================
 * Conversion to float by Ian Lance Taylor, Cygnus Support, ian@cygnus.com.
 */
const erx: f32 = 8.4506291151e-01;
// erf on [0, 0.84375]
const pp0: f32 = 1.2837916613e-01, pp1: f32 = -3.2504209876e-01, pp2: f32 = -2.8481749818e-02;
const pp3: f32 = -5.7702702470e-03, pp4: f32 = -2.3763017452e-05;
const qq1: f32 = 3.9791721106e-01, qq2: f32 = 6.5022252500e-02, qq3: f32 = 5.0813062117e-03;
const qq4: f32 = 1.3249473704e-04, qq5: f32 = -3.9602282413e-06;
// erf on [0.84375, 1.25]
const pa0: f32 = -2.3621185683e-03, pa1: f32 = 4.1485610604e-01, pa2: f32 = -3.7220788002e-01;
const pa3: f32 = 3.1834661961e-01, pa4: f32 = -1.1089469492e-01, pa5: f32 = 3.5478305072e-02;
const pa6: f32 = -2.1663755178e-03;
const qa1: f32 = 1.0642088205e-01, qa2: f32 = 5.4039794207e-01, qa3: f32 = 7.1828655899e-02;
const qa4: f32 = 1.2617121637e-01, qa5: f32 = 1.3637083583e-02, qa6: f32 = 1.1984500103e-02;
// erfc on [1.25, 1/0.35]
const ra0: f32 = -9.8649440333e-03, ra1: f32 = -6.9385856390e-01, ra2: f32 = -1.0558626175e+01;
const ra3: f32 = -6.2375331879e+01, ra4: f32 = -1.6239666748e+02, ra5: f32 = -1.8460508728e+02;
const ra6: f32 = -8.1287437439e+01, ra7: f32 = -9.8143291473e+00;
const sa1: f32 = 1.9651271820e+01, sa2: f32 = 1.3765776062e+02, sa3: f32 = 4.3456588745e+02;
const sa4: f32 = 6.4538726807e+02, sa5: f32 = 4.2900814819e+02, sa6: f32 = 1.0863500214e+02;
const sa7: f32 = 6.5702495575e+00, sa8: f32 = -6.0424413532e-02;
// erfc on [1/0.35, 28]
const rb0: f32 = -9.8649431020e-03, rb1: f32 = -7.9928326607e-01, rb2: f32 = -1.7757955551e+01;
const rb3: f32 = -1.6063638306e+02, rb4: f32 = -6.3756646729e+02, rb5: f32 = -1.0250950928e+03;
const rb6: f32 = -4.8351919556e+02;
const sb1: f32 = 3.0338060379e+01, sb2: f32 = 3.2579251099e+02, sb3: f32 = 1.5367296143e+03;
const sb4: f32 = 3.1998581543e+03, sb5: f32 = 2.5530502930e+03, sb6: f32 = 4.7452853394e+02;
const sb7: f32 = -2.2440952301e+01;

/** Scalar erfc(x), musl's erfcf with Mathf.exp. */
export function erfcf(x: f32): f32 {
  const hx = reinterpret<i32>(x);
  const ix = hx & 0x7fffffff;
  if (ix >= 0x7f800000) return <f32>((<u32>hx >> 31) << 1) + 1.0 / x; // nan, ±inf
  if (ix < 0x3f580000) { // |x| < 0.84375
    if (ix < 0x23800000) return 1.0 - x;
    const z = x * x;
    const r = pp0 + z * (pp1 + z * (pp2 + z * (pp3 + z * pp4)));
    const s: f32 = 1.0 + z * (qq1 + z * (qq2 + z * (qq3 + z * (qq4 + z * qq5))));
    const y = r / s;
    if (hx < 0x3e800000) return 1.0 - (x + x * y); // x < 1/4
    return 0.5 - (x * y + (x - 0.5));
  }
  if (ix < 0x3fa00000) { // 0.84375 <= |x| < 1.25
    const s = Mathf.abs(x) - 1.0;
    const P = pa0 + s * (pa1 + s * (pa2 + s * (pa3 + s * (pa4 + s * (pa5 + s * pa6)))));
    const Q: f32 = 1.0 + s * (qa1 + s * (qa2 + s * (qa3 + s * (qa4 + s * (qa5 + s * qa6)))));
    if (hx >= 0) return (1.0 - erx) - P / Q;
    return 1.0 + (erx + P / Q);
  }
  if (ix < 0x41e00000) { // |x| < 28
    const ax = Mathf.abs(x);
    const s: f32 = 1.0 / (ax * ax);
    let R: f32, S: f32;
    if (ix < 0x4036db6d) { // |x| < 1/0.35
      R = ra0 + s * (ra1 + s * (ra2 + s * (ra3 + s * (ra4 + s * (ra5 + s * (ra6 + s * ra7))))));
      S = 1.0 + s * (sa1 + s * (sa2 + s * (sa3 + s * (sa4 + s * (sa5 + s * (sa6 + s * (sa7 + s * sa8)))))));
    } else {
      if (hx < 0 && ix >= 0x40c00000) return 2.0; // x < -6
      R = rb0 + s * (rb1 + s * (rb2 + s * (rb3 + s * (rb4 + s * (rb5 + s * rb6)))));
      S = 1.0 + s * (sb1 + s * (sb2 + s * (sb3 + s * (sb4 + s * (sb5 + s * (sb6 + s * sb7))))));
    }
    const z = reinterpret<f32>(reinterpret<i32>(ax) & 0xfffff000);
    const r = Mathf.exp(-z * z - 0.5625) * Mathf.exp((z - ax) * (z + ax) + R / S);
    return hx > 0 ? r / ax : 2.0 - r / ax;
  }
  return hx > 0 ? 0 : 2.0;
}

@inline function sp(c: f32): v128 {
  return f32x4.splat(c);
}

@inline function sel(a: f32, b: f32, m: v128): v128 {
  return v128.bitselect(f32x4.splat(a), f32x4.splat(b), m);
}

/**
 * erfc(x) on four lanes: the regions of erfcf, each evaluated only if some lane falls into it,
 * then blended. Lanes: NaN → NaN; ±inf → 0 / 2.
 */
@inline export function erfcV(x: v128): v128 {
  const ax = f32x4.abs(x);
  const neg = f32x4.lt(x, sp(0));
  const one = sp(1);
  // Region 3 (|x| ≥ 1.25) is the default: erfc(|x|) = e^(-z² - 0.5625 + (z-|x|)(z+|x|) + R/S) / |x|
  let res = f32x4.splat(0);
  const m1 = f32x4.lt(ax, sp(0.84375));
  const m2 = v128.andnot(f32x4.lt(ax, sp(1.25)), m1);
  const m3 = f32x4.ge(ax, sp(1.25));
  if (v128.any_true(m3)) {
    const s = f32x4.div(one, f32x4.mul(ax, ax));
    const mb = f32x4.ge(ax, sp(2.857142857)); // 1/0.35: the [1/0.35, 28] coefficient set
    let R = sel(rb6, ra7, mb);
    R = madd(R, s, sel(rb5, ra6, mb));
    R = madd(R, s, sel(rb4, ra5, mb));
    R = madd(R, s, sel(rb3, ra4, mb));
    R = madd(R, s, sel(rb2, ra3, mb));
    R = madd(R, s, sel(rb1, ra2, mb));
    R = madd(R, s, sel(rb0, ra1, mb));
    // ra has one more term than rb: R_a = ra0 + s·(...); for rb the chain above already ends in rb0,
    // so the last step multiplies by s only on the ra lanes.
    R = v128.bitselect(R, madd(R, s, sp(ra0)), mb);
    let S = sel(sb7, sa8, mb);
    S = madd(S, s, sel(sb6, sa7, mb));
    S = madd(S, s, sel(sb5, sa6, mb));
    S = madd(S, s, sel(sb4, sa5, mb));
    S = madd(S, s, sel(sb3, sa4, mb));
    S = madd(S, s, sel(sb2, sa3, mb));
    S = madd(S, s, sel(sb1, sa2, mb));
    S = madd(S, s, sel(1, sa1, mb));
    S = v128.bitselect(S, madd(S, s, one), mb);
    const z = v128.and(ax, i32x4.splat(0xfffff000));
    const e1 = expV(f32x4.sub(f32x4.neg(f32x4.mul(z, z)), sp(0.5625)));
    const e2 = expV(f32x4.add(f32x4.mul(f32x4.sub(z, ax), f32x4.add(z, ax)), f32x4.div(R, S)));
    let r = f32x4.div(f32x4.mul(e1, e2), ax);
    r = v128.andnot(r, f32x4.ge(ax, sp(28))); // erfc(≥28) underflows to 0
    res = v128.bitselect(f32x4.sub(sp(2), r), r, neg);
  }
  if (v128.any_true(m2)) {
    const s = f32x4.sub(ax, one);
    let P = sp(pa6);
    P = madd(P, s, sp(pa5)); P = madd(P, s, sp(pa4)); P = madd(P, s, sp(pa3));
    P = madd(P, s, sp(pa2)); P = madd(P, s, sp(pa1)); P = madd(P, s, sp(pa0));
    let Q = sp(qa6);
    Q = madd(Q, s, sp(qa5)); Q = madd(Q, s, sp(qa4)); Q = madd(Q, s, sp(qa3));
    Q = madd(Q, s, sp(qa2)); Q = madd(Q, s, sp(qa1)); Q = madd(Q, s, one);
    const pq = f32x4.div(P, Q);
    const r2 = v128.bitselect(f32x4.add(one, f32x4.add(sp(erx), pq)), f32x4.sub(sp(1 - erx), pq), neg);
    res = v128.bitselect(r2, res, m2);
  }
  if (v128.any_true(m1)) {
    const z = f32x4.mul(x, x);
    let r = sp(pp4);
    r = madd(r, z, sp(pp3)); r = madd(r, z, sp(pp2)); r = madd(r, z, sp(pp1)); r = madd(r, z, sp(pp0));
    let s = sp(qq5);
    s = madd(s, z, sp(qq4)); s = madd(s, z, sp(qq3)); s = madd(s, z, sp(qq2)); s = madd(s, z, sp(qq1));
    s = madd(s, z, one);
    const xy = f32x4.mul(x, f32x4.div(r, s));
    const small = f32x4.lt(x, sp(0.25));
    const r1 = v128.bitselect(
      f32x4.sub(one, f32x4.add(x, xy)),
      f32x4.sub(sp(0.5), f32x4.add(xy, f32x4.sub(x, sp(0.5)))),
      small,
    );
    res = v128.bitselect(r1, res, m1);
  }
  // NaN lanes: every comparison was false, so they took region 3 with garbage; give NaN back.
  return v128.bitselect(res, x, f32x4.eq(x, x));
}
