// Causal self-attention over a per-KV-head cache, with grouped-query heads (GQA).
//   H query heads share Hkv KV heads (H % Hkv == 0): query head h reads KV head g = h / (H / Hkv).
//   Hkv = H is ordinary multi-head attention, Hkv = 1 multi-query attention (MQA).
//   KV cache (K and V separately): (Hkv, maxCtx, D) of f32, or of IEEE halves (f16, half the bytes);
//   position j of KV head g at element (g·maxCtx + j)·D.
//   kvStore(cache, src, T, past, H, D, maxCtx)     H here is the cache's head count: callers pass Hkv
//       cache[g, past + t, :] = src[t, g·D : (g+1)·D]          src: (T, H·D), the K or V projection
//   kvStoreF16(...)  the same into an f16 cache, each value rounded to the nearest half, ties to
//       even (f32ToHalfBits: subnormal halves kept, ±inf from 65520 up, NaN stays NaN)
//   attention(out, q, kCache, vCache, keyMask, probs, scratch, T, past, H, Hkv, D, maxCtx, scale, h0, h1)
//       for query heads h in [h0, h1) (KV head g = h / (H / Hkv)), queries t in [0, T) at absolute
//       position past + t:
//       p[j] = softmax_j( q[t, h]·k[g, j] · scale )  over visible keys j: j ≤ past + t and
//              (keyMask == 0 or keyMask[j] != 0)  (keyMask: u8[≥ past + T]); invisible keys get 0
//       out[t, h·D : (h+1)·D] = Σ_j p[j] · v[g, j, :]          q, out: (T, H·D) f32
//       scale: 1/√D usually; GPT-2's scale_attn_by_inverse_layer_idx passes 1/(√D·(layer + 1)).
//       probs: 0, or (H, T, past + T) f32 receiving p for heads h0..h1 (zeros past the causal edge);
//       scratch: ≥ past + T floats per thread, used for p when probs == 0.
//       A query with no visible key writes zeros (and a zero probs row).
//   attentionF16(...)  the same arguments over f16 caches, read as they are: halves are widened to
//       f32 in registers as the loops reach them (no f32 copy of the cache). Widening is exact and
//       the order of operations is attention's, so the result is attention's on the cache widened
//       by halfScalar, bit for bit (for finite halves; see "Halves are widened" below for ±inf/NaN).
// Variants: SIMD128 (4 keys per step for q·k and for p·V, vector exp) and `<name>Scalar` for each.
// One source serves both cache types: the loops are generic over the element type (f32, or u16
// for halves), specialised at compile time.
// Each query head streams its KV head on its own (a group's heads re-read the same K/V rows): the
// split over [h0, h1) between threads stays a split of query heads.

import { expV, f32ToHalfBits, f32ToHalfV, halfScalar, hsum, keepMask4, madd, sum4 } from "./vecmath";
import { softmaxRow } from "./softmax";

// ---- storing ------------------------------------------------------------------------------------

export function kvStore(cache: usize, src: usize, T: i32, past: i32, H: i32, D: i32, maxCtx: i32): void {
  const rowBytes = <usize>D << 2;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const from = src + (<usize>t * <usize>H + <usize>h) * rowBytes;
      const to = cache + (<usize>h * <usize>maxCtx + <usize>(past + t)) * rowBytes;
      memory.copy(to, from, rowBytes);
    }
  }
}

export function kvStoreScalar(cache: usize, src: usize, T: i32, past: i32, H: i32, D: i32, maxCtx: i32): void {
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      for (let d = 0; d < D; d++) {
        const v = load<f32>(src + ((<usize>t * <usize>H * <usize>D + <usize>h * <usize>D + <usize>d) << 2));
        store<f32>(cache + (((<usize>h * <usize>maxCtx + <usize>(past + t)) * <usize>D + <usize>d) << 2), v);
      }
    }
  }
}

export function kvStoreF16(cache: usize, src: usize, T: i32, past: i32, H: i32, D: i32, maxCtx: i32): void {
  const d8 = D & ~7;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const from = src + ((<usize>t * <usize>H + <usize>h) * <usize>D << 2);
      const to = cache + ((<usize>h * <usize>maxCtx + <usize>(past + t)) * <usize>D << 1);
      let d = 0;
      for (; d < d8; d += 8) {
        const lo = f32ToHalfV(v128.load(from + (<usize>d << 2)));
        const hi = f32ToHalfV(v128.load(from + (<usize>d << 2), 16));
        v128.store(to + (<usize>d << 1), i16x8.narrow_i32x4_u(lo, hi));
      }
      for (; d < D; d++) store<u16>(to + (<usize>d << 1), f32ToHalfBits(load<f32>(from + (<usize>d << 2))));
    }
  }
}

export function kvStoreF16Scalar(cache: usize, src: usize, T: i32, past: i32, H: i32, D: i32, maxCtx: i32): void {
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      for (let d = 0; d < D; d++) {
        const v = load<f32>(src + ((<usize>t * <usize>H * <usize>D + <usize>h * <usize>D + <usize>d) << 2));
        store<u16>(cache + (((<usize>h * <usize>maxCtx + <usize>(past + t)) * <usize>D + <usize>d) << 1), f32ToHalfBits(v));
      }
    }
  }
}

// ---- reading: E is the cache's element type, f32 or u16 (a half's bits) --------------------------

// Halves are widened the way halfToF32 does it, minus its last step: (h << 13) with bits 28-30
// cleared is the half's value times 2^-112 (normal and subnormal halves alike, sign included), and
// the multiply by 2^112 moves to the other operand — into q once per 4 elements shared by 4 keys,
// into p once per key. A product of powers of two is exact, so q'·k' rounds exactly as q·k does:
// the result stays attention's on the widened cache, bit for bit, and the widening costs 2
// operations per 4 halves instead of 3. Measured at past = 1024 (H = 12, D = 64, 12 layers, one
// query row): 4.6 ms folded vs 5.3 ms with the multiply; f32 caches 9.7 ms (a 6.3 MB cache, so
// partly cached: this is the compute).
// Not special-cased: a stored ±inf (a key or value past ±65504) reads as ±65536, a NaN as a finite
// value ≥ 65536. Handling them exactly costs 4 more operations per 4 halves, which measured 7.6 ms
// against the 4.6 ms above: for models whose keys and values stay within half range, as they must
// for an f16 cache to be of use. The scalar twin reads halves the same way (halfScalar).
// Tried and lost (2026-12-04, `npx tsx scripts/kv-context.mts --dtypes q4`, past = 1024, 12 layers'
// calls): 8 keys a step in scores and weightedSum, 3.22 ms against 2.14 (1.92 against 1.83 with the
// cache warm in L3); q's fold hoisted out of the key loop (into the out row, once per query row),
// 2.03–2.22 ms against 2.10–2.16: within the noise.
const TWO_112: f32 = 5.192296858534828e33;

/** 4 consecutive cache elements at p as f32 lanes: f32 as they are, halves as their value · 2^-112. */
@inline function load4<E>(p: usize): v128 {
  if (sizeof<E>() == 4) return v128.load(p);
  return v128.and(i32x4.shl(v128.load16x4_s(p), 13), i32x4.splat(0x8fffffff));
}

/** One cache element at p: f32 as it is, a half as its value · 2^-112. */
@inline function load1<E>(p: usize): f32 {
  if (sizeof<E>() == 4) return load<f32>(p);
  const h = <u32>load<u16>(p);
  return reinterpret<f32>(((h & 0x7fff) << 13) | ((h & 0x8000) << 16));
}

/**
 * Scores s[j] = (q·k_j)·scale for keys j in [0, n), 4 keys per step. Over halves q is multiplied
 * by qFold = 2^112 (see above) — or, in a row with |q| ≥ 2^15 where q·2^112 would overflow, by
 * 2^(112-e), the score then by 2^e (scale passed in multiplied).
 */
@inline function scores<E>(s: usize, qrow: usize, kh: usize, n: i32, D: i32, scale: f32, qFold: f32): void {
  const es = <usize>sizeof<E>();
  const kRow = <usize>D * es;
  const dv = <usize>(D & ~3);
  const vscale = f32x4.splat(scale);
  const vfold = f32x4.splat(qFold);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const k0 = kh + <usize>j * kRow;
    const k1 = k0 + kRow, k2 = k1 + kRow, k3 = k2 + kRow;
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    for (let d: usize = 0; d < dv; d += 4) {
      let qv = v128.load(qrow + (d << 2));
      if (sizeof<E>() == 2) qv = f32x4.mul(qv, vfold);
      const kd = d * es;
      a0 = madd(qv, load4<E>(k0 + kd), a0);
      a1 = madd(qv, load4<E>(k1 + kd), a1);
      a2 = madd(qv, load4<E>(k2 + kd), a2);
      a3 = madd(qv, load4<E>(k3 + kd), a3);
    }
    let r = sum4(a0, a1, a2, a3);
    for (let d = dv; d < <usize>D; d++) {
      let qs = load<f32>(qrow + (d << 2));
      if (sizeof<E>() == 2) qs *= qFold;
      const kd = d * es;
      r = f32x4.add(r, f32x4.mul(f32x4.splat(qs), f32x4(load1<E>(k0 + kd), load1<E>(k1 + kd), load1<E>(k2 + kd), load1<E>(k3 + kd))));
    }
    v128.store(s + (<usize>j << 2), f32x4.mul(r, vscale));
  }
  for (; j < n; j++) {
    const k0 = kh + <usize>j * kRow;
    let a = f32x4.splat(0);
    for (let d: usize = 0; d < dv; d += 4) {
      let qv = v128.load(qrow + (d << 2));
      if (sizeof<E>() == 2) qv = f32x4.mul(qv, vfold);
      a = madd(qv, load4<E>(k0 + d * es), a);
    }
    let r = hsum(a);
    for (let d = dv; d < <usize>D; d++) {
      let qs = load<f32>(qrow + (d << 2));
      if (sizeof<E>() == 2) qs *= qFold;
      r += qs * load1<E>(k0 + d * es);
    }
    store<f32>(s + (<usize>j << 2), r * scale);
  }
}

/** o = Σ_{j<n} p[j]·v_j, 4 keys per step (o is overwritten). Over halves p is multiplied by 2^112 (p ≤ 1: no overflow). */
@inline function weightedSum<E>(o: usize, p: usize, vh: usize, n: i32, D: i32): void {
  const es = <usize>sizeof<E>();
  const vRow = <usize>D * es;
  const dv = <usize>(D & ~3);
  memory.fill(o, 0, <usize>D << 2);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    let pv = v128.load(p + (<usize>j << 2));
    if (sizeof<E>() == 2) pv = f32x4.mul(pv, f32x4.splat(TWO_112));
    const p0 = f32x4.splat(f32x4.extract_lane(pv, 0)), p1 = f32x4.splat(f32x4.extract_lane(pv, 1));
    const p2 = f32x4.splat(f32x4.extract_lane(pv, 2)), p3 = f32x4.splat(f32x4.extract_lane(pv, 3));
    const v0 = vh + <usize>j * vRow;
    const v1 = v0 + vRow, v2 = v1 + vRow, v3 = v2 + vRow;
    for (let d: usize = 0; d < dv; d += 4) {
      const od = o + (d << 2);
      const vd = d * es;
      let acc = v128.load(od);
      acc = madd(p0, load4<E>(v0 + vd), acc);
      acc = madd(p1, load4<E>(v1 + vd), acc);
      acc = madd(p2, load4<E>(v2 + vd), acc);
      acc = madd(p3, load4<E>(v3 + vd), acc);
      v128.store(od, acc);
    }
    for (let d = dv; d < <usize>D; d++) {
      const od = o + (d << 2);
      const vd = d * es;
      let acc = load<f32>(od);
      acc += f32x4.extract_lane(pv, 0) * load1<E>(v0 + vd);
      acc += f32x4.extract_lane(pv, 1) * load1<E>(v1 + vd);
      acc += f32x4.extract_lane(pv, 2) * load1<E>(v2 + vd);
      acc += f32x4.extract_lane(pv, 3) * load1<E>(v3 + vd);
      store<f32>(od, acc);
    }
  }
  for (; j < n; j++) {
    let pj = load<f32>(p + (<usize>j << 2));
    if (sizeof<E>() == 2) pj *= TWO_112;
    const vpj = f32x4.splat(pj);
    const v0 = vh + <usize>j * vRow;
    for (let d: usize = 0; d < dv; d += 4) v128.store(o + (d << 2), madd(vpj, load4<E>(v0 + d * es), v128.load(o + (d << 2))));
    for (let d = dv; d < <usize>D; d++) store<f32>(o + (d << 2), load<f32>(o + (d << 2)) + pj * load1<E>(v0 + d * es));
  }
}

/** max |x[i]| over n floats. */
@inline function maxAbs(x: usize, n: i32): f32 {
  const nv = <usize>(n & ~3) << 2;
  let v = f32x4.splat(0);
  for (let i: usize = 0; i < nv; i += 16) v = f32x4.max(v, f32x4.abs(v128.load(x + i)));
  let m = max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
  for (let i = nv; i < <usize>n << 2; i += 4) m = max(m, Mathf.abs(load<f32>(x + i)));
  return m;
}

@inline function attentionOf<E>(
  out: usize, q: usize, kCache: usize, vCache: usize, keyMask: usize, probs: usize, scratch: usize,
  T: i32, past: i32, H: i32, Hkv: i32, D: i32, maxCtx: i32, scale: f32, h0: i32, h1: i32,
): void {
  const L = past + T;
  const group = H / Hkv; // query heads per KV head
  const rowBytes = <usize>D << 2; // a q / out row (f32)
  const qStride = <usize>H * rowBytes;
  const headBytes = <usize>maxCtx * <usize>D * <usize>sizeof<E>(); // a KV head in the cache
  for (let h = h0; h < h1; h++) {
    const g = h / group;
    const kh = kCache + <usize>g * headBytes;
    const vh = vCache + <usize>g * headBytes;
    for (let t = 0; t < T; t++) {
      const qrow = q + <usize>t * qStride + <usize>h * rowBytes;
      const orow = out + <usize>t * qStride + <usize>h * rowBytes;
      const p = probs ? probs + ((<usize>h * <usize>T + <usize>t) * <usize>L << 2) : scratch;
      const n = past + t + 1; // causal: keys [0, n)
      let qFold: f32 = 1, rowScale = scale;
      if (sizeof<E>() == 2) {
        qFold = TWO_112;
        const m = maxAbs(qrow, D);
        if (!(m < 32768)) {
          // (NaN or inf too: such a row gives NaN scores either way)
          const e = min<i32>(<i32>(reinterpret<u32>(m) >> 23) - 127 - 14, 114);
          qFold = reinterpret<f32>(<u32>(127 + 112 - e) << 23);
          rowScale = scale * reinterpret<f32>(<u32>(127 + e) << 23);
        }
      }
      scores<E>(p, qrow, kh, n, D, rowScale, qFold);
      if (softmaxRow(p, p, keyMask, n)) {
        weightedSum<E>(orow, p, vh, n, D);
      } else {
        memory.fill(orow, 0, rowBytes);
        memory.fill(p, 0, <usize>n << 2);
      }
      if (probs) memory.fill(p + (<usize>n << 2), 0, <usize>(L - n) << 2);
    }
  }
}

/** One cache element at p as f32, plainly (the scalar twin's reading; halves as halfScalar widens them). */
@inline function value<E>(p: usize): f32 {
  if (sizeof<E>() == 4) return load<f32>(p);
  return halfScalar(load<u16>(p));
}

@inline function attentionScalarOf<E>(
  out: usize, q: usize, kCache: usize, vCache: usize, keyMask: usize, probs: usize, scratch: usize,
  T: i32, past: i32, H: i32, Hkv: i32, D: i32, maxCtx: i32, scale: f32, h0: i32, h1: i32,
): void {
  const L = past + T;
  const group = H / Hkv;
  const es = <usize>sizeof<E>();
  for (let h = h0; h < h1; h++) {
    const g = h / group;
    for (let t = 0; t < T; t++) {
      const qrow = q + ((<usize>t * <usize>H * <usize>D + <usize>h * <usize>D) << 2);
      const orow = out + ((<usize>t * <usize>H * <usize>D + <usize>h * <usize>D) << 2);
      const p = probs ? probs + ((<usize>h * <usize>T + <usize>t) * <usize>L << 2) : scratch;
      const n = past + t + 1;
      let m: f32 = -Infinity;
      for (let j = 0; j < n; j++) {
        const k = kCache + (<usize>g * <usize>maxCtx + <usize>j) * <usize>D * es;
        let s: f32 = 0;
        for (let d = 0; d < D; d++) s += load<f32>(qrow + (<usize>d << 2)) * value<E>(k + <usize>d * es);
        s *= scale;
        store<f32>(p + (<usize>j << 2), s);
        if (keyMask == 0 || load<u8>(keyMask + <usize>j) != 0) m = max(m, s);
      }
      for (let d = 0; d < D; d++) store<f32>(orow + (<usize>d << 2), 0);
      if (m == -Infinity) {
        for (let j = 0; j < L; j++) if (probs || j < n) store<f32>(p + (<usize>j << 2), 0);
        continue;
      }
      let sum: f32 = 0;
      for (let j = 0; j < n; j++) {
        let e: f32 = 0;
        if (keyMask == 0 || load<u8>(keyMask + <usize>j) != 0) e = Mathf.exp(load<f32>(p + (<usize>j << 2)) - m);
        store<f32>(p + (<usize>j << 2), e);
        sum += e;
      }
      for (let j = 0; j < n; j++) {
        const pj = load<f32>(p + (<usize>j << 2)) / sum;
        store<f32>(p + (<usize>j << 2), pj);
        const v = vCache + (<usize>g * <usize>maxCtx + <usize>j) * <usize>D * es;
        for (let d = 0; d < D; d++) {
          const o = orow + (<usize>d << 2);
          store<f32>(o, load<f32>(o) + pj * value<E>(v + <usize>d * es));
        }
      }
      if (probs) for (let j = n; j < L; j++) store<f32>(p + (<usize>j << 2), 0);
    }
  }
}

export function attention(
  out: usize, q: usize, kCache: usize, vCache: usize, keyMask: usize, probs: usize, scratch: usize,
  T: i32, past: i32, H: i32, Hkv: i32, D: i32, maxCtx: i32, scale: f32, h0: i32, h1: i32,
): void {
  attentionOf<f32>(out, q, kCache, vCache, keyMask, probs, scratch, T, past, H, Hkv, D, maxCtx, scale, h0, h1);
}

export function attentionScalar(
  out: usize, q: usize, kCache: usize, vCache: usize, keyMask: usize, probs: usize, scratch: usize,
  T: i32, past: i32, H: i32, Hkv: i32, D: i32, maxCtx: i32, scale: f32, h0: i32, h1: i32,
): void {
  attentionScalarOf<f32>(out, q, kCache, vCache, keyMask, probs, scratch, T, past, H, Hkv, D, maxCtx, scale, h0, h1);
}

export function attentionF16(
  out: usize, q: usize, kCache: usize, vCache: usize, keyMask: usize, probs: usize, scratch: usize,
  T: i32, past: i32, H: i32, Hkv: i32, D: i32, maxCtx: i32, scale: f32, h0: i32, h1: i32,
): void {
  attentionOf<u16>(out, q, kCache, vCache, keyMask, probs, scratch, T, past, H, Hkv, D, maxCtx, scale, h0, h1);
}

export function attentionF16Scalar(
  out: usize, q: usize, kCache: usize, vCache: usize, keyMask: usize, probs: usize, scratch: usize,
  T: i32, past: i32, H: i32, Hkv: i32, D: i32, maxCtx: i32, scale: f32, h0: i32, h1: i32,
): void {
  attentionScalarOf<u16>(out, q, kCache, vCache, keyMask, probs, scratch, T, past, H, Hkv, D, maxCtx, scale, h0, h1);
}
