// Element conversions between the checkpoint dtypes and f32.
//
// Everything goes through bit patterns (Uint32Array views of the f32 destination) rather than
// through JS numbers, so NaN payloads survive and nothing is canonicalised on the way.

import { type DType, DTYPE_SIZE, CheckpointError } from "./types.js";

// The typed-array views below read and write in host byte order; every file format here is
// little-endian, and every JS engine that matters runs little-endian. Refuse loudly otherwise.
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

let F16_TABLE: Uint32Array | undefined;

/** f16 bit pattern → f32 bit pattern for all 65536 halves; 256 KB, built on first use. */
function f16Table(): Uint32Array {
  if (F16_TABLE) return F16_TABLE;
  const t = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = f16BitsToF32Bits(h);
  return (F16_TABLE = t);
}

function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    // Subnormal half: normalise into an f32 normal.
    let e = 113; // 127 - 15 + 1
    while ((mant & 0x400) === 0) {
      mant <<= 1;
      e--;
    }
    return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
  }
  if (exp === 31) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf / NaN (payload kept)
  return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** One half (as its 16-bit pattern) to a number. */
export function f16ToF32(h: number): number {
  scratchU32[0] = f16BitsToF32Bits(h & 0xffff);
  return scratchF32[0];
}

/**
 * A number to the nearest f16 bit pattern, ties to even (numpy's algorithm). The number is
 * first rounded to f32, which is what the data is in practice. Overflow gives ±inf, NaN
 * stays NaN (quiet), tiny values give signed zero or a subnormal.
 */
export function f32ToF16(x: number): number {
  scratchF32[0] = x;
  const f = scratchU32[0];
  const sign = (f >>> 16) & 0x8000;
  const fExp = f & 0x7f800000;
  if (fExp >= 0x47800000) {
    // exponent ≥ 16: overflow to inf, or inf / NaN already.
    // NaN: keep the top payload bits and set the quiet bit, so it cannot become inf.
    if (fExp === 0x7f800000 && (f & 0x7fffff) !== 0) return sign | 0x7e00 | ((f & 0x7fffff) >>> 13);
    return sign | 0x7c00;
  }
  if (fExp <= 0x38000000) {
    // Result is subnormal or zero.
    if (fExp < 0x33000000) return sign;
    const e = fExp >>> 23;
    let sig = 0x00800000 + (f & 0x007fffff);
    const lost = f & 0x7ff; // bits the shift below may drop, needed for the tie test
    sig >>>= 113 - e;
    if ((sig & 0x3fff) !== 0x1000 || lost !== 0) sig += 0x1000;
    return sign + (sig >>> 13); // a carry into the exponent gives the smallest normal: correct
  }
  const hExp = (fExp - 0x38000000) >>> 13;
  let sig = f & 0x007fffff;
  if ((sig & 0x3fff) !== 0x1000) sig += 0x1000;
  return sign + hExp + (sig >>> 13); // a carry may overflow into inf: correct
}

/** A number to the nearest bf16 bit pattern, ties to even; NaN stays NaN. */
export function f32ToBf16(x: number): number {
  scratchF32[0] = x;
  const f = scratchU32[0];
  if ((f & 0x7fffffff) > 0x7f800000) return ((f >>> 16) | 0x40) & 0xffff; // quiet NaN
  return ((f + 0x7fff + ((f >>> 16) & 1)) >>> 16) & 0xffff;
}

/** One bf16 (as its 16-bit pattern) to a number. */
export function bf16ToF32(h: number): number {
  scratchU32[0] = (h & 0xffff) << 16;
  return scratchF32[0];
}

/**
 * Converts `src` (raw little-endian elements of `dtype`) into `dst`. The caller has checked
 * `dst.length`; `src` may sit at any byte offset (zip entries need not be aligned).
 */
export function convertToF32(dtype: DType, src: Uint8Array, dst: Float32Array): void {
  if (!LITTLE_ENDIAN) throw new CheckpointError("big-endian hosts are not supported");
  const n = dst.length;
  if (src.length !== n * DTYPE_SIZE[dtype]) {
    throw new CheckpointError(`internal: ${src.length} bytes for ${n} ${dtype} elements`);
  }
  if (dtype === "F32") {
    // A byte copy is a plain memcpy whatever the alignment and never touches NaN bits.
    new Uint8Array(dst.buffer, dst.byteOffset, n * 4).set(src);
    return;
  }
  const out = new Uint32Array(dst.buffer, dst.byteOffset, n);
  if ((src.byteOffset & 1) === 0) {
    halvesToF32Bits(dtype, new Uint16Array(src.buffer, src.byteOffset, n), out);
    return;
  }
  // Odd offset (possible inside a zip): copy through an aligned scratch buffer in chunks,
  // which keeps the fast loop (byte-wise assembly is ~5× slower).
  const tmp = new Uint16Array(Math.min(n, 1 << 16));
  const tmpBytes = new Uint8Array(tmp.buffer);
  for (let i = 0; i < n; i += tmp.length) {
    const m = Math.min(tmp.length, n - i);
    tmpBytes.set(src.subarray(2 * i, 2 * (i + m)));
    halvesToF32Bits(dtype, tmp.subarray(0, m), out.subarray(i, i + m));
  }
}

function halvesToF32Bits(dtype: "F16" | "BF16", u16: Uint16Array, out: Uint32Array): void {
  const n = u16.length;
  if (dtype === "F16") {
    const t = f16Table();
    for (let i = 0; i < n; i++) out[i] = t[u16[i]];
  } else {
    for (let i = 0; i < n; i++) out[i] = u16[i] << 16;
  }
}

/** Float32Array → F16 little-endian bytes (for writing checkpoints). */
export function f32ArrayToF16Bytes(src: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(src.length * 2);
  for (let i = 0; i < src.length; i++) {
    const h = f32ToF16(src[i]);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}

/** Float32Array → BF16 little-endian bytes (for writing checkpoints). */
export function f32ArrayToBf16Bytes(src: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(src.length * 2);
  for (let i = 0; i < src.length; i++) {
    const h = f32ToBf16(src[i]);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return out;
}

/** Float32Array → F32 little-endian bytes (a copy). */
export function f32ArrayToBytes(src: ArrayLike<number>): Uint8Array {
  return new Uint8Array(Float32Array.from(src).buffer);
}
