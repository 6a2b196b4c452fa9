// Test helpers for the kernel specs: seeded data, raw f32 buffers, and one max-error check per tensor.

/** xorshift32: small, seeded, reproducible. */
export class Rng {
  state: u32;
  constructor(seed: u32) {
    this.state = seed != 0 ? seed : 0x9e3779b9;
  }
  next(): u32 {
    let s = this.state;
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    this.state = s;
    return s;
  }
  /** Uniform in [lo, hi). */
  uniform(lo: f32, hi: f32): f32 {
    return lo + (hi - lo) * (<f32>(this.next() >> 8) * (1.0 / 16777216.0));
  }
}

const live: usize[] = [];

/**
 * n f32 values on the heap. misalign (in floats, 0..3) shifts the start off 16-byte alignment so
 * the SIMD paths see unaligned pointers, as row starts of odd-sized tensors do.
 */
export function allocF32(n: i32, misalign: i32 = 0): usize {
  const raw = heap.alloc(<usize>max(n, 1) * 4 + 32);
  live.push(raw);
  return ((raw + 15) & ~(<usize>15)) + (<usize>misalign << 2);
}

export function allocBytes(n: i32): usize {
  const raw = heap.alloc(<usize>max(n, 1) + 16);
  live.push(raw);
  return raw;
}

/** Free everything allocated since the last call (call at the end of each test). */
export function freeAll(): void {
  for (let i = 0; i < live.length; i++) heap.free(live[i]);
  live.length = 0;
}

export function fillUniform(p: usize, n: i32, rng: Rng, lo: f32, hi: f32): void {
  for (let i = 0; i < n; i++) store<f32>(p + (<usize>i << 2), rng.uniform(lo, hi));
}

export function fillConst(p: usize, n: i32, v: f32): void {
  for (let i = 0; i < n; i++) store<f32>(p + (<usize>i << 2), v);
}

export function copyF32(dst: usize, src: usize, n: i32): void {
  memory.copy(dst, src, <usize>n << 2);
}

/**
 * One assertion per tensor: every |got - ref| ≤ atol + rtol·|ref| (NaN only where ref is NaN).
 * On failure the message names the tensor, the worst index (by err / tol) and both values.
 */
export function expectClose(name: string, got: usize, ref: usize, n: i32, atol: f32, rtol: f32): void {
  let worst: f64 = -1;
  let at = -1;
  let bad = false;
  for (let i = 0; i < n; i++) {
    const g = load<f32>(got + (<usize>i << 2));
    const r = load<f32>(ref + (<usize>i << 2));
    let ratio: f64;
    if (isNaN(r) || isNaN(g)) {
      ratio = isNaN(r) && isNaN(g) ? 0 : Infinity;
    } else if (g == r) {
      ratio = 0; // covers equal infinities
    } else {
      const tol = <f64>atol + <f64>rtol * Math.abs(<f64>r);
      ratio = Math.abs(<f64>g - <f64>r) / tol;
    }
    if (ratio > worst) {
      worst = ratio;
      at = i;
    }
    if (ratio > 1) bad = true;
  }
  let msg = name + ": n=" + n.toString();
  if (at >= 0) {
    const g = load<f32>(got + (<usize>at << 2));
    const r = load<f32>(ref + (<usize>at << 2));
    msg += " worst at [" + at.toString() + "] got " + g.toString() + " ref " + r.toString() +
      " |err| " + Math.abs(<f64>g - <f64>r).toString() + " = " + worst.toString() + " x tol (atol " +
      atol.toString() + ", rtol " + rtol.toString() + ")";
  }
  expect<bool>(bad).toBe(false, msg);
}

/** Exact equality of n f32 values (bitwise, so -0 ≠ 0 and NaN = NaN are caught). */
export function expectEqual(name: string, got: usize, ref: usize, n: i32): void {
  let at = -1;
  for (let i = 0; i < n; i++) {
    if (load<u32>(got + (<usize>i << 2)) != load<u32>(ref + (<usize>i << 2))) {
      at = i;
      break;
    }
  }
  let msg = name + ": n=" + n.toString();
  if (at >= 0) {
    msg += " first difference at [" + at.toString() + "] got " + load<f32>(got + (<usize>at << 2)).toString() +
      " ref " + load<f32>(ref + (<usize>at << 2)).toString();
  }
  expect<i32>(at).toBe(-1, msg);
}

/** Every value in [p, p+n) is exactly v. */
export function expectAll(name: string, p: usize, n: i32, v: f32): void {
  let at = -1;
  for (let i = 0; i < n; i++) {
    if (load<f32>(p + (<usize>i << 2)) != v) {
      at = i;
      break;
    }
  }
  let msg = name + ": expected all " + v.toString();
  if (at >= 0) msg += ", [" + at.toString() + "] = " + load<f32>(p + (<usize>at << 2)).toString();
  expect<i32>(at).toBe(-1, msg);
}

/** Machine epsilon of f32 (2^-23). */
export const EPS: f32 = 1.1920929e-7;

/** n f64 values on the heap (16-byte aligned). */
export function allocF64(n: i32): usize {
  return allocF32(n * 2);
}

/**
 * One assertion per tensor against a float64 reference with a per-element tolerance:
 * every |got - ref| ≤ tol[i]; the message names the worst index (by err / tol) and both values.
 */
export function expectWithin(name: string, got: usize, ref: usize, tol: usize, n: i32): void {
  let worst: f64 = 0;
  let at = -1;
  for (let i = 0; i < n; i++) {
    const g = <f64>load<f32>(got + (<usize>i << 2));
    const r = load<f64>(ref + (<usize>i << 3));
    const t = load<f64>(tol + (<usize>i << 3));
    const ratio = g == r ? 0 : (isNaN(g) ? Infinity : Math.abs(g - r) / t);
    if (ratio > worst || at < 0) {
      worst = ratio;
      at = i;
    }
  }
  let msg = name + ": n=" + n.toString();
  if (at >= 0) {
    msg += " worst at [" + at.toString() + "] got " + load<f32>(got + (<usize>at << 2)).toString() + " ref " +
      load<f64>(ref + (<usize>at << 3)).toString() + " = " + worst.toString() + " x tol " + load<f64>(tol + (<usize>at << 3)).toString();
  }
  expect<bool>(worst <= 1).toBe(true, msg);
}
