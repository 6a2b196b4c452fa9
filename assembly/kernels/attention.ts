// Causal self-attention over a per-KV-head cache, with grouped-query heads (GQA).
//   H query heads share Hkv KV heads (H % Hkv == 0): query head h reads KV head g = h / (H / Hkv).
//   Hkv = H is ordinary multi-head attention, Hkv = 1 multi-query attention (MQA).
//   KV cache (K and V separately): (Hkv, maxCtx, D) f32; position j of KV head g at ((g·maxCtx + j)·D).
//   kvStore(cache, src, T, past, H, D, maxCtx)     H here is the cache's head count: callers pass Hkv
//       cache[g, past + t, :] = src[t, g·D : (g+1)·D]          src: (T, H·D), the K or V projection
//   attention(out, q, kCache, vCache, keyMask, probs, scratch, T, past, H, Hkv, D, maxCtx, scale, h0, h1)
//       for query heads h in [h0, h1) (KV head g = h / (H / Hkv)), queries t in [0, T) at absolute
//       position past + t:
//       p[j] = softmax_j( q[t, h]·k[g, j] · scale )  over visible keys j: j ≤ past + t and
//              (keyMask == 0 or keyMask[j] != 0)  (keyMask: u8[≥ past + T]); invisible keys get 0
//       out[t, h·D : (h+1)·D] = Σ_j p[j] · v[g, j, :]          q, out: (T, H·D)
//       scale: 1/√D usually; GPT-2's scale_attn_by_inverse_layer_idx passes 1/(√D·(layer + 1)).
//       probs: 0, or (H, T, past + T) f32 receiving p for heads h0..h1 (zeros past the causal edge);
//       scratch: ≥ past + T floats per thread, used for p when probs == 0.
//       A query with no visible key writes zeros (and a zero probs row).
// Variants: SIMD128 (4 keys per step for q·k and for p·V, vector exp) and `<name>Scalar`.
// Each query head streams its KV head on its own (a group's heads re-read the same K/V rows): the
// split over [h0, h1) between threads stays a split of query heads.

import { expV, hsum, keepMask4, madd, sum4 } from "./vecmath";

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

/** Scores s[j] = (q·k_j)·scale for keys j in [0, n), 4 keys per step. */
@inline function scores(s: usize, qrow: usize, kh: usize, n: i32, D: i32, scale: f32): void {
  const rowBytes = <usize>D << 2;
  const dv = <usize>(D & ~3) << 2;
  const vscale = f32x4.splat(scale);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const k0 = kh + <usize>j * rowBytes;
    const k1 = k0 + rowBytes, k2 = k1 + rowBytes, k3 = k2 + rowBytes;
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    for (let d: usize = 0; d < dv; d += 16) {
      const qv = v128.load(qrow + d);
      a0 = madd(qv, v128.load(k0 + d), a0);
      a1 = madd(qv, v128.load(k1 + d), a1);
      a2 = madd(qv, v128.load(k2 + d), a2);
      a3 = madd(qv, v128.load(k3 + d), a3);
    }
    let r = sum4(a0, a1, a2, a3);
    for (let d = dv; d < rowBytes; d += 4) {
      const qs = load<f32>(qrow + d);
      r = f32x4.add(r, f32x4.mul(f32x4.splat(qs), f32x4(load<f32>(k0 + d), load<f32>(k1 + d), load<f32>(k2 + d), load<f32>(k3 + d))));
    }
    v128.store(s + (<usize>j << 2), f32x4.mul(r, vscale));
  }
  for (; j < n; j++) {
    const k0 = kh + <usize>j * rowBytes;
    let a = f32x4.splat(0);
    for (let d: usize = 0; d < dv; d += 16) a = madd(v128.load(qrow + d), v128.load(k0 + d), a);
    let r = hsum(a);
    for (let d = dv; d < rowBytes; d += 4) r += load<f32>(qrow + d) * load<f32>(k0 + d);
    store<f32>(s + (<usize>j << 2), r * scale);
  }
}

/** In place over p[0, n): p = visible ? e^(p - max) / Σ : 0. Returns false if no key is visible. */
@inline function softmaxKeys(p: usize, keyMask: usize, n: i32): bool {
  const nv = <usize>(n & ~3) << 2;
  const nb = <usize>n << 2;
  const ninf = f32x4.splat(-Infinity);
  let vmax = ninf;
  for (let i: usize = 0; i < nv; i += 16) {
    let v = v128.load(p + i);
    if (keyMask) v = v128.bitselect(v, ninf, keepMask4(keyMask + (i >> 2)));
    vmax = f32x4.max(vmax, v);
  }
  let m = max(max(f32x4.extract_lane(vmax, 0), f32x4.extract_lane(vmax, 1)), max(f32x4.extract_lane(vmax, 2), f32x4.extract_lane(vmax, 3)));
  for (let i = nv; i < nb; i += 4) {
    if (keyMask == 0 || load<u8>(keyMask + (i >> 2)) != 0) m = max(m, load<f32>(p + i));
  }
  if (m == -Infinity) return false;
  const vm = f32x4.splat(m);
  let acc = f32x4.splat(0);
  for (let i: usize = 0; i < nv; i += 16) {
    let e = expV(f32x4.sub(v128.load(p + i), vm));
    if (keyMask) e = v128.and(e, keepMask4(keyMask + (i >> 2)));
    acc = f32x4.add(acc, e);
    v128.store(p + i, e);
  }
  let s = hsum(acc);
  for (let i = nv; i < nb; i += 4) {
    let e: f32 = 0;
    if (keyMask == 0 || load<u8>(keyMask + (i >> 2)) != 0) e = Mathf.exp(load<f32>(p + i) - m);
    s += e;
    store<f32>(p + i, e);
  }
  const inv: f32 = 1.0 / s;
  const vinv = f32x4.splat(inv);
  for (let i: usize = 0; i < nv; i += 16) v128.store(p + i, f32x4.mul(v128.load(p + i), vinv));
  for (let i = nv; i < nb; i += 4) store<f32>(p + i, load<f32>(p + i) * inv);
  return true;
}

/** o = Σ_{j<n} p[j]·v_j, 4 keys per step (o is overwritten). */
@inline function weightedSum(o: usize, p: usize, vh: usize, n: i32, D: i32): void {
  const rowBytes = <usize>D << 2;
  const dv = <usize>(D & ~3) << 2;
  memory.fill(o, 0, rowBytes);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const pv = v128.load(p + (<usize>j << 2));
    const p0 = f32x4.splat(f32x4.extract_lane(pv, 0)), p1 = f32x4.splat(f32x4.extract_lane(pv, 1));
    const p2 = f32x4.splat(f32x4.extract_lane(pv, 2)), p3 = f32x4.splat(f32x4.extract_lane(pv, 3));
    const v0 = vh + <usize>j * rowBytes;
    const v1 = v0 + rowBytes, v2 = v1 + rowBytes, v3 = v2 + rowBytes;
    for (let d: usize = 0; d < dv; d += 16) {
      let acc = v128.load(o + d);
      acc = madd(p0, v128.load(v0 + d), acc);
      acc = madd(p1, v128.load(v1 + d), acc);
      acc = madd(p2, v128.load(v2 + d), acc);
      acc = madd(p3, v128.load(v3 + d), acc);
      v128.store(o + d, acc);
    }
    for (let d = dv; d < rowBytes; d += 4) {
      let acc = load<f32>(o + d);
      acc += f32x4.extract_lane(pv, 0) * load<f32>(v0 + d);
      acc += f32x4.extract_lane(pv, 1) * load<f32>(v1 + d);
      acc += f32x4.extract_lane(pv, 2) * load<f32>(v2 + d);
      acc += f32x4.extract_lane(pv, 3) * load<f32>(v3 + d);
      store<f32>(o + d, acc);
    }
  }
  for (; j < n; j++) {
    const pj = load<f32>(p + (<usize>j << 2));
    const vpj = f32x4.splat(pj);
    const v0 = vh + <usize>j * rowBytes;
    for (let d: usize = 0; d < dv; d += 16) v128.store(o + d, madd(vpj, v128.load(v0 + d), v128.load(o + d)));
    for (let d = dv; d < rowBytes; d += 4) store<f32>(o + d, load<f32>(o + d) + pj * load<f32>(v0 + d));
  }
}

export function attention(
  out: usize, q: usize, kCache: usize, vCache: usize, keyMask: usize, probs: usize, scratch: usize,
  T: i32, past: i32, H: i32, Hkv: i32, D: i32, maxCtx: i32, scale: f32, h0: i32, h1: i32,
): void {
  const L = past + T;
  const group = H / Hkv; // query heads per KV head
  const rowBytes = <usize>D << 2;
  const qStride = <usize>H * rowBytes;
  const headBytes = <usize>maxCtx * rowBytes;
  for (let h = h0; h < h1; h++) {
    const g = h / group;
    const kh = kCache + <usize>g * headBytes;
    const vh = vCache + <usize>g * headBytes;
    for (let t = 0; t < T; t++) {
      const qrow = q + <usize>t * qStride + <usize>h * rowBytes;
      const orow = out + <usize>t * qStride + <usize>h * rowBytes;
      const p = probs ? probs + ((<usize>h * <usize>T + <usize>t) * <usize>L << 2) : scratch;
      const n = past + t + 1; // causal: keys [0, n)
      scores(p, qrow, kh, n, D, scale);
      if (softmaxKeys(p, keyMask, n)) {
        weightedSum(orow, p, vh, n, D);
      } else {
        memory.fill(orow, 0, rowBytes);
        memory.fill(p, 0, <usize>n << 2);
      }
      if (probs) memory.fill(p + (<usize>n << 2), 0, <usize>(L - n) << 2);
    }
  }
}

export function attentionScalar(
  out: usize, q: usize, kCache: usize, vCache: usize, keyMask: usize, probs: usize, scratch: usize,
  T: i32, past: i32, H: i32, Hkv: i32, D: i32, maxCtx: i32, scale: f32, h0: i32, h1: i32,
): void {
  const L = past + T;
  const group = H / Hkv;
  for (let h = h0; h < h1; h++) {
    const g = h / group;
    for (let t = 0; t < T; t++) {
      const qrow = q + ((<usize>t * <usize>H * <usize>D + <usize>h * <usize>D) << 2);
      const orow = out + ((<usize>t * <usize>H * <usize>D + <usize>h * <usize>D) << 2);
      const p = probs ? probs + ((<usize>h * <usize>T + <usize>t) * <usize>L << 2) : scratch;
      const n = past + t + 1;
      let m: f32 = -Infinity;
      for (let j = 0; j < n; j++) {
        const k = kCache + ((<usize>g * <usize>maxCtx + <usize>j) * <usize>D << 2);
        let s: f32 = 0;
        for (let d = 0; d < D; d++) s += load<f32>(qrow + (<usize>d << 2)) * load<f32>(k + (<usize>d << 2));
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
        const v = vCache + ((<usize>g * <usize>maxCtx + <usize>j) * <usize>D << 2);
        for (let d = 0; d < D; d++) {
          const o = orow + (<usize>d << 2);
          store<f32>(o, load<f32>(o) + pj * load<f32>(v + (<usize>d << 2)));
        }
      }
      if (probs) for (let j = n; j < L; j++) store<f32>(p + (<usize>j << 2), 0);
    }
  }
}
