// Kernel accuracy against float64 references (test/ref.ts), through the real loader and arena, for
// every build this runtime runs (vitest passes --experimental-wasm-relaxed-simd, so both on Node 20),
// each as the plain and the shared-memory (-mt) binary.
// The as-pect specs (assembly/__tests__) compare each SIMD kernel with its scalar twin; these tests
// check the absolute answer, including the transcendental functions against exact erf / exp.
//
// Tolerances (ε = 2^-23), each from the f32 error the kernel is expected to make:
//   linear      atol ε·√K·rms(y): f32 accumulation of K products (see linear.spec.ts); the SIMD
//               kernel's lane-wise partial sums drift less than the scalar twin's sequential sum
//   norms       atol 2·ε·√C, rtol 2ε
//   softmax     rtol 2·ε·(4 + √cols), atol 1e-30
//   attention   atol = rtol = ε·(8 + √L + √D)/4 · max(1, scale·√D) (scores grow with the scale)
//   rope        atol 16ε: a·cos ∓ b·sin of |a|, |b| ≤ 4, three roundings of values ≤ 8
//   swiglu      the silu rtol below plus ε for the ·up
//   activations rtol ε·(6 + c(x)), atol 1e-30: a few ulps, plus the conditioning c of erfc / exp at
//               the argument (the f32 rounding of x/√2 alone moves erfc(-x/√2) by ~x²·ε/2 relative)
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { Arena } from "../src/arena.js";
import { detectFeatures, loadWasm, type Build, type Wasm } from "../src/wasm.js";
import * as ref from "./ref.js";

const EPS = 2 ** -23;
const features = detectFeatures();
const BUILDS: Build[] = features.relaxedSimd ? ["simd", "relaxed"] : ["simd"];
// Each build also comes as a shared-memory (-mt) module for worker threads: same source, own binary.
const VARIANTS = BUILDS.flatMap((build) => [
  { name: build, build, shared: false },
  ...(features.threads ? [{ name: `${build}-mt`, build, shared: true }] : []),
]);

/** Max of |got - want| / (atol + rtol·|want|) with where it happened; NaN in want = not checked. */
function expectClose(name: string, got: Float32Array, want: Float64Array, atol: number, rtol: number | ((i: number) => number)): void {
  expect(got.length, `${name}: length`).toBe(want.length);
  let worst = 0,
    at = -1,
    checked = 0;
  for (let i = 0; i < want.length; i++) {
    const w = want[i];
    if (Number.isNaN(w)) continue;
    checked++;
    const g = got[i];
    const tol = atol + (typeof rtol === "number" ? rtol : rtol(i)) * Math.abs(w);
    const r = g === w ? 0 : Number.isNaN(g) ? Infinity : Math.abs(g - w) / tol;
    if (r > worst) {
      worst = r;
      at = i;
    }
  }
  expect(checked, `${name}: nothing checked`).toBeGreaterThan(0);
  const where = at < 0 ? "" : ` worst at [${at}]: got ${got[at]}, want ${want[at]}, |err| ${Math.abs(got[at] - want[at])}`;
  expect(worst, `${name}:${where} = ${worst.toFixed(3)} x tol`).toBeLessThanOrEqual(1);
}

describe.each(VARIANTS)("kernels, $name build", ({ build, shared }) => {
  let wasm: Wasm;
  let arena: Arena;
  let mark0 = 0;

  beforeAll(async () => {
    wasm = await loadWasm({ build, shared });
    arena = new Arena(wasm, 64 << 20);
    mark0 = arena.mark();
  });
  afterEach(() => arena.reset(mark0));

  /** Copy into the arena; misalign (floats) shifts the start off 16-byte alignment. */
  const put = (a: Float32Array, misalign = 0): number => {
    const p = arena.alloc(a.byteLength + 16) + 4 * misalign;
    arena.f32(p, a.length).set(a);
    return p;
  };
  const putU8 = (a: Uint8Array): number => {
    const p = arena.alloc(a.byteLength + 16);
    arena.u8(p, a.length).set(a);
    return p;
  };
  const zeros = (n: number, misalign = 0) => put(new Float32Array(n), misalign);
  const read = (p: number, n: number) => arena.f32(p, n).slice();

  it("uses the build it asked for", () => {
    expect(wasm.build).toBe(build);
    expect(wasm.shared).toBe(shared);
  });

  describe("linear", () => {
    const run = (T: number, K: number, N: number, bias: boolean, n0: number, n1: number, misalign: number, seed: number) => {
      const rng = new ref.Rng(seed);
      const x = rng.f32(T * K, -1, 1),
        w = rng.f32(N * K, -1, 1),
        b = bias ? rng.f32(N, -1, 1) : null;
      const SENTINEL = 4242.5;
      const px = put(x, misalign),
        pw = put(w, misalign),
        pb = b ? put(b, misalign) : 0;
      const py = put(new Float32Array(T * N).fill(SENTINEL), misalign);
      wasm.k.linear(py, px, pw, pb, T, K, N, n0, n1);
      const got = read(py, T * N);
      const want = ref.linear(x, w, b, T, K, N, n0, n1);
      const rmsY = Math.sqrt(K) / 3;
      expectClose(`linear T=${T} K=${K} N=${N} [${n0},${n1})${bias ? " bias" : ""}`, got, want, EPS * Math.sqrt(K) * rmsY + EPS, 1e-6);
      for (let t = 0; t < T; t++) {
        for (let o = 0; o < N; o++) {
          if (o < n0 || o >= n1) expect(got[t * N + o], `column ${o} outside [${n0},${n1}) written`).toBe(SENTINEL);
        }
      }
    };
    it("GEMM (T > 1): awkward sizes, bias and none, unaligned", () => {
      run(5, 17, 33, true, 0, 33, 1, 1);
      run(7, 3, 5, false, 0, 5, 3, 2);
      run(2, 33, 7, true, 0, 7, 0, 3);
    });
    it("GEMM: OPT-125M fc1 shape, T = 128, 768 -> 3072", () => {
      run(128, 768, 3072, true, 0, 3072, 0, 4);
    });
    it("matvec (T = 1): 768 -> 3072 and 3072 -> 768", () => {
      run(1, 768, 3072, false, 0, 3072, 0, 5);
      run(1, 3072, 768, true, 0, 768, 0, 6);
    });
    it("[n0, n1) sub-ranges write only their columns", () => {
      run(1, 768, 3072, true, 100, 1001, 0, 7);
      run(9, 17, 33, true, 5, 22, 1, 8);
      run(1, 5, 9, false, 8, 9, 2, 9);
    });
  });

  describe("norms", () => {
    it("layerNorm: affine, not affine, in place, C = 17 and 768", () => {
      for (const [T, C, affine, mis, seed] of [
        [4, 768, true, 0, 10],
        [3, 17, false, 1, 11],
        [2, 33, true, 3, 12],
      ] as const) {
        const rng = new ref.Rng(seed);
        const x = rng.f32(T * C, -2, 3),
          w = affine ? rng.f32(C, -2, 2) : null,
          b = affine ? rng.f32(C, -1, 1) : null;
        const px = put(x, mis);
        wasm.k.layerNorm(px, px, w ? put(w) : 0, b ? put(b) : 0, T, C, 1e-5);
        expectClose(
          `layerNorm T=${T} C=${C}${affine ? " affine" : ""}`,
          read(px, T * C),
          ref.layerNorm(x, w, b, T, C, 1e-5),
          2 * EPS * Math.sqrt(C),
          2 * EPS,
        );
      }
    });
    it("rmsNorm: with and without w", () => {
      for (const [T, C, withW, seed] of [
        [4, 768, true, 13],
        [3, 17, false, 14],
      ] as const) {
        const rng = new ref.Rng(seed);
        const x = rng.f32(T * C, -3, 3),
          w = withW ? rng.f32(C, -2, 2) : null;
        const py = zeros(T * C, 1);
        wasm.k.rmsNorm(py, put(x, 2), w ? put(w) : 0, T, C, 1e-6);
        expectClose(`rmsNorm T=${T} C=${C}`, read(py, T * C), ref.rmsNorm(x, w, T, C, 1e-6), 2 * EPS * Math.sqrt(C), 2 * EPS);
      }
    });
  });

  describe("softmax", () => {
    const tol = (cols: number) => 2 * EPS * (4 + Math.sqrt(cols));
    it("no mask, and a padding mask with exact zeros where excluded", () => {
      for (const [rows, cols, masked, seed] of [
        [12, 128, false, 20],
        [3, 17, true, 21],
        [2, 50272, true, 22],
      ] as const) {
        const rng = new ref.Rng(seed);
        const x = rng.f32(rows * cols, -12, 12);
        const mask = masked ? Uint8Array.from({ length: cols }, () => (rng.next() % 4 === 0 ? 0 : 1)) : null;
        const py = zeros(rows * cols);
        wasm.k.softmax(py, put(x, 1), mask ? putU8(mask) : 0, rows, cols);
        const got = read(py, rows * cols);
        expectClose(`softmax ${rows}x${cols}${masked ? " masked" : ""}`, got, ref.softmax(x, mask, rows, cols), 1e-30, tol(cols));
        if (mask) for (let i = 0; i < got.length; i++) if (!mask[i % cols]) expect(got[i]).toBe(0);
      }
    });
    it("a row with everything excluded is all zeros, not NaN", () => {
      const rows = 2,
        cols = 7;
      const x = new ref.Rng(23).f32(rows * cols, -1, 1);
      const px = put(x);
      wasm.k.softmax(px, px, putU8(new Uint8Array(cols)), rows, cols); // in place
      expect(Array.from(read(px, rows * cols))).toEqual(new Array(rows * cols).fill(0));
    });
  });

  describe("attention", () => {
    /** H query heads over Hkv KV heads; scale defaults to 1/√D. */
    const run = (
      T: number,
      past: number,
      H: number,
      Hkv: number,
      D: number,
      h0: number,
      h1: number,
      masked: boolean,
      seed: number,
      scale = 1 / Math.sqrt(D),
    ) => {
      const rng = new ref.Rng(seed);
      const L = past + T,
        HD = H * D,
        KD = Hkv * D,
        maxCtx = L + 5;
      const q = rng.f32(T * HD, -3, 3),
        k = rng.f32(L * KD, -1, 1),
        v = rng.f32(L * KD, -1, 1);
      // Padding mask: a few hidden keys, and key 0 hidden so that query 0 (with past = 0) sees nothing.
      const mask = masked ? Uint8Array.from({ length: L }, (_, j) => (j === 0 || rng.next() % 5 === 0 ? 0 : 1)) : null;
      const kc = zeros(Hkv * maxCtx * D),
        vc = zeros(Hkv * maxCtx * D);
      const pk = put(k),
        pv = put(v);
      if (past > 0) {
        wasm.k.kvStore(kc, pk, past, 0, Hkv, D, maxCtx);
        wasm.k.kvStore(vc, pv, past, 0, Hkv, D, maxCtx);
      }
      wasm.k.kvStore(kc, pk + 4 * past * KD, T, past, Hkv, D, maxCtx);
      wasm.k.kvStore(vc, pv + 4 * past * KD, T, past, Hkv, D, maxCtx);
      const out = put(new Float32Array(T * HD).fill(NaN)),
        probs = put(new Float32Array(H * T * L).fill(NaN));
      const s = Math.fround(scale);
      wasm.k.attention(out, put(q), kc, vc, mask ? putU8(mask) : 0, probs, zeros(L), T, past, H, Hkv, D, maxCtx, s, h0, h1);
      const want = ref.attention(q, k, v, mask, T, past, H, D, h0, h1, Hkv, s);
      const tol = 0.25 * EPS * (8 + Math.sqrt(L) + Math.sqrt(D)) * Math.max(1, s * Math.sqrt(D));
      const name = `attention T=${T} past=${past} H=${H} Hkv=${Hkv} D=${D} scale=${s} heads [${h0},${h1})${masked ? " masked" : ""}`;
      const gotOut = read(out, T * HD),
        gotProbs = read(probs, H * T * L);
      expectClose(`${name} out`, gotOut, want.out, tol, tol);
      expectClose(`${name} probs`, gotProbs, want.probs, tol, tol);
      // heads outside [h0, h1) untouched
      for (let i = 0; i < T * HD; i++) {
        const h = Math.floor((i % HD) / D);
        if (h < h0 || h >= h1) expect(Number.isNaN(gotOut[i]), `${name}: out[${i}] of head ${h} written`).toBe(true);
      }
    };
    it("awkward: H = 3, D = 5 and 17, past 0 and > 0, padding mask", () => {
      run(4, 0, 3, 3, 5, 0, 3, true, 30);
      run(5, 7, 3, 3, 17, 0, 3, true, 31);
      run(1, 9, 3, 3, 17, 1, 3, false, 32);
    });
    it("OPT-125M: H = 12, D = 64, prompt and decode", () => {
      run(16, 0, 12, 12, 64, 0, 12, true, 33);
      run(1, 40, 12, 12, 64, 0, 12, true, 34);
      run(8, 20, 12, 12, 64, 4, 9, false, 35);
    });
    it("grouped-query heads: H = 6 over Hkv = 3, MQA H = 5 over 1, SmolLM-135M's 9 over 3", () => {
      run(5, 3, 6, 3, 7, 0, 6, true, 36);
      run(3, 4, 6, 3, 17, 1, 4, false, 37);
      run(4, 2, 5, 1, 7, 0, 5, true, 38);
      run(8, 0, 9, 3, 64, 0, 9, true, 39);
      run(1, 30, 9, 3, 64, 2, 7, false, 40);
    });
    it("other scales: GPT-2's 1/(√D·(layer + 1)) and a sharper one", () => {
      run(6, 4, 4, 4, 17, 0, 4, true, 41, 1 / (Math.sqrt(17) * 3));
      run(4, 9, 4, 2, 64, 0, 4, false, 42, 0.5);
    });
  });

  describe("rope", () => {
    it("D = 6, 10, 34, 64, H = 1, 3, 9, at real angles, in place", () => {
      for (const [rows, H, D, past, seed] of [
        [5, 3, 6, 0, 43],
        [1, 9, 10, 17, 44],
        [5, 1, 34, 3, 45],
        [4, 9, 64, 100, 46],
      ] as const) {
        const rng = new ref.Rng(seed);
        const x = rng.f32(rows * H * D, -4, 4);
        const cs = new Float32Array(rows * D);
        for (let r = 0; r < rows; r++) {
          for (let i = 0; i < D / 2; i++) {
            const a = (past + r) * 10000 ** ((-2 * i) / D);
            cs[r * D + i] = Math.cos(a);
            cs[r * D + D / 2 + i] = Math.sin(a);
          }
        }
        const px = put(x, 1);
        wasm.k.rope(px, put(cs, 2), rows, H, D);
        // a·c ∓ b·s with |a|, |b| ≤ 4: three roundings of values ≤ 8
        expectClose(`rope rows=${rows} H=${H} D=${D}`, read(px, x.length), ref.rope(x, cs, rows, H, D), 2 * EPS * 8, 0);
      }
    });
  });

  describe("swiglu", () => {
    it("silu(gate)·up, with extreme gates, and in place over gate", () => {
      const n = 1031;
      const rng = new ref.Rng(47);
      const gate = rng.f32(n, -12, 12),
        up = rng.f32(n, -3, 3);
      gate.set([80, -80, 0, -0, -87.4, -100, -1e30, 1e30, 20, -20]);
      const pg = put(gate, 1);
      wasm.k.swiglu(pg, pg, put(up, 3), n);
      // e^-g to a few ulps, then 1 +, ÷, · (the rtol of silu above, plus one rounding)
      expectClose("swiglu", read(pg, n), ref.swiglu(gate, up), 1e-30, (i) => EPS * (7 + 2 * Math.abs(gate[i])));
    });
  });

  describe("activations", () => {
    // x/√2 at erfc's region edges, zero, tiny, large and non-finite, then random values
    const special = [0, -0, 1e-30, -1e-30, 1e-8, -1e-8, 30, -30, 200, -200, 1e30, -1e30, Infinity, -Infinity, NaN];
    for (const e of [0.25, 0.84375, 1.25, 2.857142857, 6, 28]) for (const s of [-1, 1]) special.push(s * e * Math.SQRT2);
    const x = new Float32Array(4099);
    x.set(special);
    const rng = new ref.Rng(40);
    for (let i = special.length; i < x.length; i++) x[i] = rng.uniform(-12, 12);
    // A few ulps, plus the conditioning of the transcendental at this x: the argument carries a few
    // ulps of rounding, which e^a / erfc(a) turn into a relative error of |a|·ε / a²·ε.
    const u = (v: number) => Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v);
    const rtols: Record<string, (v: number) => number> = {
      gelu: (v) => EPS * (6 + v * v), // erfc(-v/√2): a² = v²/2, times 2
      geluTanh: (v) => EPS * (6 + 4 * Math.abs(u(v))), // e^(-2u)
      silu: (v) => EPS * (6 + 2 * Math.abs(v)), // e^(-v)
      relu: () => 0,
    };

    it.each([
      ["gelu", ref.gelu],
      ["geluTanh", ref.geluTanh],
      ["silu", ref.silu],
      ["relu", ref.relu],
    ] as const)("%s", (name, f) => {
      const px = put(x, 1),
        py = zeros(x.length, 3);
      (wasm.k[name] as (y: number, x: number, n: number) => void)(py, px, x.length);
      const got = read(py, x.length);
      const want = ref.map(x, f);
      // Non-finite inputs: NaN/±inf in → the reference decides (NaN where the formula is inf·0).
      for (let i = 0; i < x.length; i++) {
        if (!Number.isFinite(x[i])) {
          expect(
            Object.is(got[i], Math.fround(want[i])) || (Number.isNaN(got[i]) && Number.isNaN(want[i])),
            `${name}(${x[i]}) = ${got[i]}, want ${want[i]}`,
          ).toBe(true);
          want[i] = NaN; // checked here, skipped below
        }
      }
      expectClose(name, got, want, 1e-30, (i) => rtols[name](x[i]));
    });
  });
});

// Node 20 runs the relaxed build only with --experimental-wasm-relaxed-simd; src/wasm.ts sets that flag
// itself (v8.setFlagsFromString), so `node dist/cli.js` and `npx wasm-lm` get the relaxed build without
// flags. A child process without any V8 flag: first a relaxed validate (false on Node 20) and a compile
// of the simd build — the flag must still work after both — then loadWasm({ build: "auto" }), which must
// pick relaxed, and a relaxed-only kernel path (the int8 dot product) that must agree with its twin.
describe("relaxed SIMD without command-line flags", () => {
  it("plain `node` loads the relaxed build with build: 'auto' and runs it correctly", () => {
    const script = `
      import { readFileSync } from "node:fs";
      import { fileURLToPath } from "node:url";
      import { loadWasm, wasmUrl } from "./src/wasm.ts";
      const flagged = process.execArgv.filter((a) => a.startsWith("--")).join(" ");
      const before = WebAssembly.validate(readFileSync(fileURLToPath(wasmUrl("relaxed"))));
      await WebAssembly.compile(readFileSync(fileURLToPath(wasmUrl("simd"))));
      const wasm = await loadWasm({ build: "auto" });
      const k = wasm.k, base = (k.heapBase() + 63) & ~63, T = 3, K = 64, N = 5;
      const f32 = new Float32Array(wasm.memory.buffer), i8 = new Int8Array(wasm.memory.buffer);
      const x = base, w = x + T * K * 4, q = w + N * K * 4, s = q + N * K, xq = s + N * 4, xs = xq + T * K, y = xs + T * 4 * 4, y2 = y + T * N * 4;
      for (let i = 0; i < T * K; i++) f32[x / 4 + i] = Math.sin(i * 1.7);
      for (let i = 0; i < N * K; i++) f32[w / 4 + i] = Math.cos(i * 0.37);
      k.quantizeI8(q, s, w, N, K, 64);
      k.quantizeActI8(xq, xs, x, T, K, 8);
      k.linearI8Dot(y, xq, xs, q, s, 0, T, K, N, 0, N, 64);
      k.linearI8DotScalar(y2, xq, xs, q, s, 0, T, K, N, 0, N, 64);
      let maxDiff = 0;
      for (let i = 0; i < T * N; i++) maxDiff = Math.max(maxDiff, Math.abs(f32[y / 4 + i] - f32[y2 / 4 + i]));
      console.log(JSON.stringify({ node: process.version, flagged, before, build: wasm.build, maxDiff }));
    `;
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: fileURLToPath(new URL("..", import.meta.url)),
      encoding: "utf8",
      env: { ...process.env, NODE_OPTIONS: "" },
    });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
    expect(out.flagged).not.toMatch(/relaxed/);
    expect(out.build, JSON.stringify(out)).toBe("relaxed");
    expect(out.maxDiff, JSON.stringify(out)).toBeLessThan(1e-4);
  });
});
