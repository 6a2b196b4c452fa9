// f16 and int8 linear kernels against their scalar twins and a float64 reference on the
// dequantized weights, on awkward sizes and OPT-125M's, in every build.
import { describe, expect, it } from "vitest";
import { loadWasm } from "../src/wasm.js";
import { Arena } from "../src/arena.js";
import { BUILDS } from "./helpers.js";

function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}

function f16ToF64(h: number): number {
  const e = (h >> 10) & 31,
    m = h & 1023,
    sign = h & 0x8000 ? -1 : 1;
  return sign * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
}

/** Largest |ours − ref| / (atol + rtol·|ref|): ≤ 1 passes. */
function worst(ours: Float32Array, ref: Float64Array, atol: number, rtol: number) {
  let w = 0,
    at = -1;
  for (let i = 0; i < ref.length; i++) {
    const r = Math.abs(ours[i] - ref[i]) / (atol + rtol * Math.abs(ref[i]));
    if (!(r <= w)) {
      w = r;
      at = i;
    }
  }
  return { w, msg: `worst at ${at}: ours ${ours[at]}, ref ${ref[at]}` };
}

const SHAPES: [number, number, number, number][] = [
  // T, K, N, group
  [1, 64, 17, 64],
  [1, 80, 9, 16],
  [3, 96, 33, 32],
  [5, 64, 64, 64],
  [7, 768, 37, 64],
  [1, 768, 3072, 64],
  [1, 3072, 768, 64],
  [17, 768, 100, 768],
];

for (const build of BUILDS) {
  describe(`compressed linear, ${build}`, async () => {
    const wasm = await loadWasm({ build });
    const k = wasm.k;
    it("every finite half float expands exactly (signs, zeros, subnormals), by rows and in the matvec", () => {
      const a = new Arena(wasm, 4 << 20);
      const finite = Array.from({ length: 65536 }, (_, h) => h).filter((h) => ((h >> 10) & 31) !== 31);
      const rows = finite.length / 8; // 61440 finite halves = 7680 rows of 8
      const table = a.alloc(finite.length * 2),
        ids = a.alloc(rows * 4),
        out = a.alloc(finite.length * 4);
      a.u16(table, finite.length).set(finite);
      a.i32(ids, rows).set(Array.from({ length: rows }, (_, i) => i));
      k.embedGatherF16(out, table, ids, rows, 8);
      const got = a.f32(out, finite.length);
      const bad = finite.findIndex(
        (h, i) =>
          !Object.is(got[i], Math.fround(f16ToF64(h))) && !(got[i] === 0 && f16ToF64(h) === 0 && Object.is(got[i], h & 0x8000 ? -0 : 0)),
      );
      expect(bad, bad < 0 ? "" : `half 0x${finite[bad].toString(16)}: got ${got[bad]}, want ${f16ToF64(finite[bad])}`).toBe(-1);
      // The matvec's path: x one-hot per column, so y[o] is the weight itself.
      const K = 8,
        N = rows,
        x = a.alloc(K * 4),
        y = a.alloc(N * 4);
      for (let j = 0; j < K; j++) {
        a.f32(x, K).fill(0);
        a.f32(x, K)[j] = 1;
        k.linearF16(y, x, table, 0, 1, K, N, 0, N, 0);
        const col = a.f32(y, N);
        for (let o = 0; o < N; o++) {
          const want = f16ToF64(finite[o * K + j]);
          if (col[o] !== want) throw new Error(`matvec: half 0x${finite[o * K + j].toString(16)} gave ${col[o]}, want ${want}`);
        }
      }
    });
    for (const [T, K, N, G] of SHAPES) {
      it(`T=${T} K=${K} N=${N} group ${G}`, () => {
        const a = new Arena(wasm, 64 << 20);
        const r = rng(T * 7919 + K * 31 + N);
        const w = a.alloc(N * K * 4),
          x = a.alloc(T * K * 4),
          b = a.alloc(N * 4);
        a.f32(w, N * K).set(Array.from({ length: N * K }, r));
        a.f32(x, T * K).set(Array.from({ length: T * K }, r));
        a.f32(b, N).set(Array.from({ length: N }, r));
        const q = a.alloc(N * K),
          s = a.alloc(((N * K) / G) * 4),
          h = a.alloc(N * K * 2);
        const scratch = a.alloc(k.quantRows() * K * 4);
        k.quantizeI8(q, s, w, N, K, G);
        k.f32ToF16Rows(h, w, N * K);
        const ys = [0, 1, 2, 3].map(() => a.alloc(T * N * 4));
        k.linearI8(ys[0], x, q, s, b, T, K, N, 0, N, G, scratch);
        k.linearI8Scalar(ys[1], x, q, s, b, T, K, N, 0, N, G, scratch);
        k.linearF16(ys[2], x, h, b, T, K, N, 0, N, scratch);
        k.linearF16Scalar(ys[3], x, h, b, T, K, N, 0, N, scratch);
        // float64 references on exactly the stored weights
        const X = a.f32(x, T * K),
          B = a.f32(b, N),
          Q = a.i8(q, N * K),
          S = a.f32(s, (N * K) / G),
          H = a.u16(h, N * K);
        const refI8 = new Float64Array(T * N),
          refF16 = new Float64Array(T * N);
        let rms = 0;
        for (let t = 0; t < T; t++)
          for (let o = 0; o < N; o++) {
            let si = B[o],
              sh = B[o];
            for (let kk = 0; kk < K; kk++) {
              si += X[t * K + kk] * Q[o * K + kk] * S[o * (K / G) + Math.floor(kk / G)];
              sh += X[t * K + kk] * f16ToF64(H[o * K + kk]);
            }
            refI8[t * N + o] = si;
            refF16[t * N + o] = sh;
            rms += si * si;
          }
        rms = Math.sqrt(rms / (T * N));
        const eps = 2 ** -23;
        // f32 summation: ε·√K·rms. T = 1 int8 rounds activations to 16 bits: 2^-15·√K·rms more.
        const atol = eps * Math.sqrt(K) * rms * 4;
        const atolI8 = atol + (T === 1 ? 2 ** -15 * Math.sqrt(K) * rms : 0);
        for (const [ours, ref, tol, name] of [
          [ys[0], refI8, atolI8, "linearI8"],
          [ys[1], refI8, atol, "linearI8Scalar"],
          [ys[2], refF16, atol, "linearF16"],
          [ys[3], refF16, atol, "linearF16Scalar"],
        ] as const) {
          const c = worst(a.f32(ours, T * N), ref, tol, 4 * eps);
          expect(c.w, `${name}: ${c.msg}`).toBeLessThanOrEqual(1);
        }
        // the quantization itself: every weight within half a step of its group's scale
        const W = a.f32(w, N * K);
        for (let i = 0; i < N * K; i += 97) {
          const sc = S[Math.floor(i / K) * (K / G) + Math.floor((i % K) / G)];
          expect(Math.abs(W[i] - Q[i] * sc)).toBeLessThanOrEqual(sc / 2 + 1e-7);
        }
      });
    }
  });
}

// q4 and int8·int8 (assembly/kernels/linear_dot.ts) through the loader: against float64 on exactly the
// stored values (bf16 scales and mins, int8 activations with their block scales), with the bound of
// linear_dot.spec.ts — (2·nb + 4)·ε·Σ_blk |scale|·Σ|products| — and against f32 on the unquantized
// weights: relative RMS error ≤ 8.5 % (q4) and 0.9 % (int8, group 64; 1.1 % with one scale per row) on
// Gaussian weights, measured 7.4 %, 0.76 % and 0.94 % (heavy-tailed weights: see the spec).
const DOT_SHAPES: [number, number, number, number][] = [
  // T, K, N, int8 group
  [1, 768, 3072, 64],
  [1, 3072, 768, 64],
  [7, 576, 17, 64],
  [3, 96, 33, 32],
  [2, 32, 5, 32],
  [128, 768, 64, 768],
];

function gaussian(seed: number) {
  const u = rng(seed);
  return () => {
    const a = Math.max((u() + 1) / 2, 1e-9),
      b = (u() + 1) / 2;
    return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * b);
  };
}

for (const build of BUILDS) {
  describe(`int8-activation linear (q4, int8·int8), ${build}`, async () => {
    const wasm = await loadWasm({ build });
    const k = wasm.k;
    for (const [T, K, N, G] of DOT_SHAPES) {
      it(`T=${T} K=${K} N=${N} (int8 group ${G})`, () => {
        const a = new Arena(wasm, 64 << 20);
        const g = gaussian(T * 7919 + K * 31 + N),
          nb = K / 32;
        const W = Float32Array.from({ length: N * K }, () => 0.04 * g()),
          X = Float32Array.from({ length: T * K }, g);
        const B = Float32Array.from({ length: N }, () => 0.5 * g());
        const w = a.put(W),
          x = a.put(X),
          b = a.put(B);
        const xq = a.alloc(T * K),
          xs = a.alloc(T * nb * 8),
          q4 = a.alloc((N * K) / 2),
          s4 = a.alloc(N * nb * 4);
        const q8 = a.alloc(N * K),
          s8 = a.alloc(N * (K / G) * 4),
          y4 = a.alloc(T * N * 4),
          y8 = a.alloc(T * N * 4);
        k.quantizeActI8(xq, xs, x, T, K, 8);
        k.quantizeQ4(q4, s4, w, N, K);
        k.quantizeI8(q8, s8, w, N, K, G);
        k.linearQ4(y4, xq, xs, q4, s4, b, T, K, N, 0, N);
        k.linearI8Dot(y8, xq, xs, q8, s8, b, T, K, N, 0, N, G);
        const XQ = a.i8(xq, T * K),
          XS = a.f32(xs, T * nb * 2),
          Q4 = a.u8(q4, (N * K) / 2),
          S4 = a.u16(s4, N * nb * 2);
        const Q8 = a.i8(q8, N * K),
          S8 = a.f32(s8, N * (K / G));
        const bf16 = (h: number) => new Float32Array(new Uint32Array([h << 16]).buffer)[0];
        const ref4 = new Float64Array(T * N),
          ref8 = new Float64Array(T * N),
          tol4 = new Float64Array(T * N),
          tol8 = new Float64Array(T * N);
        const f32 = new Float64Array(T * N);
        for (let t = 0; t < T; t++)
          for (let o = 0; o < N; o++) {
            let s4sum = B[o],
              s8sum = B[o],
              m4 = Math.abs(B[o]),
              m8 = m4,
              exact = B[o];
            for (let blk = 0; blk < nb; blk++) {
              const xsb = XS[t * 2 * nb + blk];
              const d = bf16(S4[o * 2 * nb + blk]),
                m = bf16(S4[o * 2 * nb + nb + blk]);
              const s8b = S8[o * (K / G) + Math.floor((blk * 32) / G)];
              let D4 = 0,
                A4 = 0,
                S = 0,
                D8 = 0,
                A8 = 0;
              for (let i = 0; i < 32; i++) {
                const kk = blk * 32 + i,
                  xv = XQ[t * K + kk];
                const byte = Q4[o * (K / 2) + blk * 16 + (i & 15)],
                  u = i < 16 ? byte & 15 : byte >> 4;
                D4 += u * xv;
                A4 += u * Math.abs(xv);
                S += xv;
                D8 += Q8[o * K + kk] * xv;
                A8 += Math.abs(Q8[o * K + kk] * xv);
                exact += W[o * K + kk] * X[t * K + kk];
              }
              s4sum += d * xsb * D4 + m * xsb * S;
              m4 += d * xsb * A4 + Math.abs(m * xsb * S);
              s8sum += s8b * xsb * D8;
              m8 += Math.abs(s8b * xsb) * A8;
            }
            const i = t * N + o;
            ref4[i] = s4sum;
            ref8[i] = s8sum;
            f32[i] = exact;
            tol4[i] = (2 * nb + 4) * 2 ** -23 * m4;
            tol8[i] = (2 * nb + 4) * 2 ** -23 * m8;
          }
        const Y4 = a.f32(y4, T * N),
          Y8 = a.f32(y8, T * N);
        for (const [name, got, ref, tol] of [
          ["linearQ4", Y4, ref4, tol4],
          ["linearI8Dot", Y8, ref8, tol8],
        ] as const) {
          let worstR = 0,
            at = 0;
          for (let i = 0; i < T * N; i++) {
            const r = Math.abs(got[i] - ref[i]) / tol[i];
            if (!(r <= worstR)) {
              worstR = r;
              at = i;
            }
          }
          expect(worstR, `${name} vs float64 on the stored values: worst at ${at}: ${got[at]} vs ${ref[at]}`).toBeLessThanOrEqual(1);
        }
        // Against f32 weights and activations (bias excluded from the error's scale).
        const relErr = (got: Float32Array) => {
          let e = 0,
            r = 0;
          for (let i = 0; i < T * N; i++) {
            e += (got[i] - f32[i]) ** 2;
            r += (f32[i] - B[i % N]) ** 2;
          }
          return Math.sqrt(e / r);
        };
        if (T * N >= 64) {
          expect(relErr(Y4), "q4: relative RMS error vs f32").toBeLessThanOrEqual(0.085);
          // one scale per row (G = K) is coarser: measured 0.94 %
          expect(relErr(Y8), `int8·int8 (group ${G}): relative RMS error vs f32`).toBeLessThanOrEqual(G <= 64 ? 0.009 : 0.011);
        }
      });
    }
  });
}
