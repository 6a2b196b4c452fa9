// wasm-lm/kernels (src/kernels.ts): each kernel on Float32Arrays, SIMD and its scalar twin, against
// the float64 references of test/ref.ts, in every build this runtime runs. Awkward sizes (1, 3, 5,
// 7, 17, 33…), inputs checked unchanged after every call, wrong lengths refused in one line naming
// the argument. Tolerances as in test/kernels.test.ts (ε = 2^-23); SIMD and scalar are compared
// with each other at the sum of their tolerances against the reference.
import { beforeAll, describe, expect, it } from "vitest";
import { loadKernels, ropeTable, type Kernels } from "../src/kernels.js";
import { BUILDS } from "./helpers.js";
import * as ref from "./ref.js";

const EPS = 2 ** -23;

/** Worst |got − want| / (atol + rtol·|want|) ≤ 1, the index in the message. */
function expectClose(name: string, got: Float32Array, want: ArrayLike<number>, atol: number, rtol: number | ((i: number) => number)): void {
  expect(got.length, `${name}: length`).toBe(want.length);
  let worst = 0,
    at = -1;
  for (let i = 0; i < want.length; i++) {
    const w = want[i],
      g = got[i];
    if (Number.isNaN(w)) continue;
    const tol = atol + (typeof rtol === "number" ? rtol : rtol(i)) * Math.abs(w);
    const r = g === w ? 0 : Number.isNaN(g) ? Infinity : Math.abs(g - w) / tol;
    if (r > worst) {
      worst = r;
      at = i;
    }
  }
  const where = at < 0 ? "" : ` worst at [${at}]: got ${got[at]}, want ${want[at]}`;
  expect(worst, `${name}:${where} = ${worst.toFixed(3)} × tol`).toBeLessThanOrEqual(1);
}

/** Runs f on copies' originals and checks they are unchanged afterwards. */
function unchanged<T>(inputs: (Float32Array | Uint8Array | null)[], f: () => T): T {
  const before = inputs.map((a) => (a ? a.slice() : null));
  const r = f();
  inputs.forEach((a, i) => {
    if (a) expect(Array.from(a), `input ${i} mutated`).toEqual(Array.from(before[i]!));
  });
  return r;
}

describe.each(BUILDS)("wasm-lm/kernels, %s build", (build) => {
  let k: Kernels;
  beforeAll(async () => {
    k = await loadKernels({ build });
  });

  /**
   * SIMD and scalar each against the reference at (atol, rtol), and against each other at twice
   * that (each is within one tolerance of the reference).
   */
  const both = (
    name: string,
    inputs: (Float32Array | Uint8Array | null)[],
    call: (scalar: boolean) => Float32Array,
    want: ArrayLike<number>,
    atol: number,
    rtol: number | ((i: number) => number),
  ) => {
    const simd = unchanged(inputs, () => call(false));
    const scalar = unchanged(inputs, () => call(true));
    expectClose(`${name} (simd)`, simd, want, atol, rtol);
    expectClose(`${name} (scalar)`, scalar, want, atol, rtol);
    const r2 = typeof rtol === "number" ? 2 * rtol : (i: number) => 2 * rtol(i);
    const scaled = Float64Array.from(scalar);
    expectClose(`${name}: simd vs scalar`, simd, scaled, 2 * atol, r2);
  };

  it("runs the build it asked for, and the memory is reset after each call", () => {
    expect(k.build).toBe(build);
    const x = new ref.Rng(1).f32(1 << 16, -1, 1);
    k.relu(x);
    const after = k.memoryBytes;
    for (let i = 0; i < 5; i++) k.relu(x);
    expect(k.memoryBytes).toBe(after);
  });

  it("linear: y = x·wᵀ + b, GEMM and matvec, with and without bias", () => {
    for (const [T, K, N, bias, seed] of [
      [5, 17, 33, true, 1],
      [7, 3, 5, false, 2],
      [1, 67, 13, true, 3],
      [1, 768, 7, false, 4],
      [3, 1, 1, true, 5],
    ] as const) {
      const rng = new ref.Rng(seed);
      const x = rng.f32(T * K, -1, 1),
        w = rng.f32(N * K, -1, 1),
        b = bias ? rng.f32(N, -1, 1) : null;
      const rmsY = Math.sqrt(K) / 3;
      both(
        `linear T=${T} K=${K} N=${N}${bias ? " bias" : ""}`,
        [x, w, b],
        (scalar) => k.linear(x, w, b, T, K, N, { scalar }),
        ref.linear(x, w, b, T, K, N),
        EPS * Math.sqrt(K) * rmsY + EPS,
        1e-6,
      );
    }
  });

  it("layerNorm and rmsNorm: affine and not, C = 1, 17, 33", () => {
    for (const [T, C, affine, seed] of [
      [3, 17, true, 10],
      [2, 33, false, 11],
      [5, 1, true, 12],
      [1, 7, true, 13],
    ] as const) {
      const rng = new ref.Rng(seed);
      const x = rng.f32(T * C, -2, 3),
        w = affine ? rng.f32(C, -2, 2) : null,
        b = affine ? rng.f32(C, -1, 1) : null;
      const tol = 2 * EPS * Math.sqrt(C);
      both(
        `layerNorm T=${T} C=${C}`,
        [x, w, b],
        (scalar) => k.layerNorm(x, w, b, T, C, { scalar, eps: 1e-5 }),
        ref.layerNorm(x, w, b, T, C, 1e-5),
        tol,
        2 * EPS,
      );
      both(`rmsNorm T=${T} C=${C}`, [x, w], (scalar) => k.rmsNorm(x, w, T, C, { scalar }), ref.rmsNorm(x, w, T, C, 1e-6), tol, 2 * EPS);
    }
  });

  it("softmax: with and without a mask; excluded columns exactly 0", () => {
    for (const [rows, cols, masked, seed] of [
      [3, 17, true, 20],
      [5, 1, false, 21],
      [2, 33, false, 22],
      [1, 7, true, 23],
    ] as const) {
      const rng = new ref.Rng(seed);
      const x = rng.f32(rows * cols, -12, 12);
      const mask = masked ? Uint8Array.from({ length: cols }, (_, c) => (c === 0 || rng.next() % 4 ? 1 : 0)) : null;
      both(
        `softmax ${rows}x${cols}${masked ? " masked" : ""}`,
        [x, mask],
        (scalar) => k.softmax(x, rows, cols, { scalar, mask }),
        ref.softmax(x, mask, rows, cols),
        1e-30,
        2 * EPS * (4 + Math.sqrt(cols)),
      );
      if (mask) {
        const y = k.softmax(x, rows, cols, { mask });
        for (let i = 0; i < y.length; i++) if (!mask[i % cols]) expect(y[i]).toBe(0);
      }
    }
  });

  it("attention: causal, multi-head, grouped-query and multi-query, past > 0, scale, key mask", () => {
    const cases = [
      // T, past, H, Hkv, D, scale, masked
      [4, 0, 3, 3, 5, undefined, false],
      [5, 7, 6, 2, 17, undefined, true],
      [1, 9, 4, 1, 8, 0.5, false],
      [3, 2, 9, 3, 7, 1 / (Math.sqrt(7) * 3), true],
    ] as const;
    let seed = 30;
    for (const [T, past, H, Hkv, D, scale, masked] of cases) {
      const rng = new ref.Rng(seed++);
      const L = past + T;
      const q = rng.f32(T * H * D, -3, 3),
        kk = rng.f32(L * Hkv * D, -1, 1),
        v = rng.f32(L * Hkv * D, -1, 1);
      const keyMask = masked ? Uint8Array.from({ length: L }, (_, j) => (j === L - 1 || rng.next() % 5 ? 1 : 0)) : null;
      const s = Math.fround(scale ?? 1 / Math.sqrt(D));
      const want = ref.attention(q, kk, v, keyMask, T, past, H, D, 0, H, Hkv, s).out;
      const tol = 0.25 * EPS * (8 + Math.sqrt(L) + Math.sqrt(D)) * Math.max(1, s * Math.sqrt(D));
      both(
        `attention T=${T} past=${past} H=${H} Hkv=${Hkv} D=${D} scale=${s}${masked ? " masked" : ""}`,
        [q, kk, v, keyMask],
        (scalar) => k.attention(q, kk, v, T, H, Hkv, D, { scalar, past, scale, keyMask }),
        want,
        tol,
        tol,
      );
    }
  });

  it("rope: rotate-half with ropeTable's cos | sin, D/2 not a multiple of 4", () => {
    for (const [rows, H, D, seed] of [
      [3, 2, 10, 40],
      [1, 3, 2, 41],
      [5, 1, 34, 42],
    ] as const) {
      const rng = new ref.Rng(seed);
      const x = rng.f32(rows * H * D, -4, 4);
      const cs = ropeTable(
        Array.from({ length: rows }, (_, r) => 3 * r + 1),
        D,
        10000,
      );
      both(
        `rope rows=${rows} H=${H} D=${D}`,
        [x, cs],
        (scalar) => k.rope(x, cs, rows, H, D, { scalar }),
        ref.rope(x, cs, rows, H, D),
        2 * EPS * 8,
        0,
      );
    }
    // The table itself: cos² + sin² = 1, position 0 is (1, 0).
    const cs = ropeTable([0, 5], 6);
    expect(Array.from(cs.subarray(0, 6))).toEqual([1, 1, 1, 0, 0, 0]);
    for (let i = 0; i < 3; i++) expect(cs[6 + i] ** 2 + cs[9 + i] ** 2).toBeCloseTo(1, 6);
  });

  it("swiglu and the activations: gelu, geluTanh, silu, relu", () => {
    const rng = new ref.Rng(50);
    const n = 1031;
    const gate = rng.f32(n, -12, 12),
      up = rng.f32(n, -3, 3);
    both(
      "swiglu",
      [gate, up],
      (scalar) => k.swiglu(gate, up, { scalar }),
      ref.swiglu(gate, up),
      1e-30,
      (i) => EPS * (7 + 2 * Math.abs(gate[i])),
    );
    const u = (v: number) => Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v);
    const x = gate;
    both(
      "gelu",
      [x],
      (scalar) => k.gelu(x, { scalar }),
      ref.map(x, ref.gelu),
      1e-30,
      (i) => EPS * (6 + x[i] * x[i]),
    );
    both(
      "geluTanh",
      [x],
      (scalar) => k.geluTanh(x, { scalar }),
      ref.map(x, ref.geluTanh),
      1e-30,
      (i) => EPS * (6 + 4 * Math.abs(u(x[i]))),
    );
    both(
      "silu",
      [x],
      (scalar) => k.silu(x, { scalar }),
      ref.map(x, ref.silu),
      1e-30,
      (i) => EPS * (6 + 2 * Math.abs(x[i])),
    );
    both("relu", [x], (scalar) => k.relu(x, { scalar }), ref.map(x, ref.relu), 0, 0);
    for (const m of [1, 3, 5, 7])
      expect(Array.from(k.relu(Float32Array.from({ length: m }, (_, i) => i - 2)))).toEqual(
        Array.from({ length: m }, (_, i) => Math.max(0, i - 2)),
      );
    expect(k.gelu(new Float32Array(0)).length).toBe(0);
  });

  it("wrong lengths, types and sizes: one-line errors naming the argument", () => {
    const f = (n: number) => new Float32Array(n);
    const cases: [() => unknown, RegExp][] = [
      [() => k.linear(f(14), f(15), null, 3, 5, 3), /^wasm-lm: linear: x has 14 elements, expected T·K = 15$/],
      [() => k.linear(f(15), f(14), null, 3, 5, 3), /^wasm-lm: linear: w has 14 elements, expected N·K = 15$/],
      [() => k.linear(f(15), f(15), f(4), 3, 5, 3), /^wasm-lm: linear: b has 4 elements, expected N = 3$/],
      [() => k.linear([1, 2] as unknown as Float32Array, f(2), null, 1, 2, 1), /^wasm-lm: linear: x must be a Float32Array, got Array$/],
      [() => k.linear(f(15), f(15), null, 3.5, 5, 3), /^wasm-lm: linear: T = 3.5 must be a non-negative integer$/],
      [() => k.layerNorm(f(6), f(2), null, 2, 3), /^wasm-lm: layerNorm: w has 2 elements, expected C = 3$/],
      [() => k.layerNorm(f(6), null, null, 2, 3, { eps: -1 }), /^wasm-lm: layerNorm: eps = -1 must be a non-negative number$/],
      [() => k.rmsNorm(f(5), null, 2, 3), /^wasm-lm: rmsNorm: x has 5 elements, expected T·C = 6$/],
      [() => k.softmax(f(6), 2, 3, { mask: new Uint8Array(2) }), /^wasm-lm: softmax: mask has 2 elements, expected cols = 3$/],
      [
        () => k.softmax(f(6), 2, 3, { mask: f(3) as unknown as Uint8Array }),
        /^wasm-lm: softmax: mask must be a Uint8Array, got Float32Array$/,
      ],
      [() => k.attention(f(8), f(8), f(8), 2, 2, 3, 2), /^wasm-lm: attention: Hkv = 3 must divide H = 2$/],
      [() => k.attention(f(8), f(7), f(8), 2, 2, 2, 2), /^wasm-lm: attention: k has 7 elements, expected \(past \+ T\)·Hkv·D = 8$/],
      [
        () => k.attention(f(8), f(8), f(8), 2, 2, 2, 2, { past: 1 }),
        /^wasm-lm: attention: k has 8 elements, expected \(past \+ T\)·Hkv·D = 12$/,
      ],
      [() => k.attention(f(8), f(8), f(9), 2, 2, 2, 2), /^wasm-lm: attention: v has 9 elements, expected \(past \+ T\)·Hkv·D = 8$/],
      [
        () => k.attention(f(8), f(8), f(8), 2, 2, 2, 2, { keyMask: new Uint8Array(3) }),
        /^wasm-lm: attention: keyMask has 3 elements, expected past \+ T = 2$/,
      ],
      [() => k.rope(f(12), f(6), 2, 2, 3), /^wasm-lm: rope: D = 3 must be even$/],
      [() => k.rope(f(16), f(6), 2, 2, 4), /^wasm-lm: rope: cs has 6 elements, expected rows·D = 8$/],
      [() => k.swiglu(f(4), f(5)), /^wasm-lm: swiglu: up has 5 elements, expected gate.length = 4$/],
      [() => k.gelu(null as unknown as Float32Array), /^wasm-lm: gelu: x must be a Float32Array, got null$/],
    ];
    for (const [call, message] of cases) {
      expect(call).toThrow(message);
    }
    // The arena is usable after a refused call.
    expect(Array.from(k.relu(Float32Array.of(-1, 2)))).toEqual([0, 2]);
  });
});
