// T > 1 linears, one thread, every path in one run: f32 linear, linearI8 (int8 rows expanded to f32),
// linearQ4 (the T > 1 gemmQ4 inside it) and gemmQ4Tiles (gemm_dot.ts), the activation
// quantizing and regrouping included where the model pays it. A check against linearQ4 first,
// then interleaved rounds; medians and G MACs/s.
//
//   node --experimental-wasm-relaxed-simd --import tsx bench/gemm-tiles.ts [build] [T] [K,N ...]
//   e.g. ... bench/gemm-tiles.ts relaxed 128 768,3072 3072,768
import { Arena } from "../src/arena.js";
import { type Build, loadWasm } from "../src/wasm.js";

const [build = "relaxed", tArg = "128", ...shapeArgs] = process.argv.slice(2);
const T = Number(tArg);
const shapes = (shapeArgs.length ? shapeArgs : ["768,3072", "3072,768", "768,768"]).map((s) => s.split(",").map(Number));
const G = 64;
const ROUNDS = 7;

const wasm = await loadWasm({ build: build as Build });
const k = wasm.k;
let seed = 1;
const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;

const arena = new Arena(wasm);
for (const [K, N] of shapes) {
  const mark = arena.mark();
  const f32 = (n: number, fill = true) => {
    const p = arena.alloc(n * 4, 64);
    if (fill) {
      const a = arena.f32(p, n);
      for (let i = 0; i < n; i++) a[i] = rnd();
    }
    return p;
  };
  const bytes = (n: number) => arena.alloc(n, 64);
  const nb = K / 32;
  const w = f32(N * K),
    x = f32(T * K),
    b = f32(N);
  const y = f32(T * N, false),
    y2 = f32(T * N, false);
  const q4 = bytes((N * K) / 2),
    s4 = bytes(N * nb * 4);
  k.quantizeQ4(q4, s4, w, N, K);
  const q8 = bytes(N * K),
    s8 = f32(N * (K / G), false);
  k.quantizeI8(q8, s8, w, N, K, G);
  const xq = bytes(T * K),
    xs = f32(T * nb * 2, false),
    xt = f32(Math.ceil(T / 4) * 8 * nb, false);
  const scratch = bytes(k.quantRows() * K * 4);
  const runs: Record<string, (out: number) => void> = {
    f32: (o) => k.linear(o, x, w, b, T, K, N, 0, N),
    linearI8: (o) => k.linearI8(o, x, q8, s8, b, T, K, N, 0, N, G, scratch),
    linearQ4: (o) => {
      k.quantizeActI8(xq, xs, x, T, K, 8);
      k.linearQ4(o, xq, xs, q4, s4, b, T, K, N, 0, N);
    },
    gemmQ4Tiles: (o) => {
      k.quantizeActI8(xq, xs, x, T, K, 8);
      k.actTiles(xt, xs, T, K);
      k.gemmQ4Tiles(o, xq, xt, q4, s4, b, T, K, N, 0, N);
    },
  };
  // Check: gemmQ4Tiles against linearQ4 (the same formula).
  const diff = (ref: string, name: string) => {
    runs[ref](y);
    runs[name](y2);
    const a = arena.f32(y, T * N),
      c = arena.f32(y2, T * N);
    let e = 0,
      m = 0;
    for (let i = 0; i < a.length; i++) {
      e = Math.max(e, Math.abs(a[i] - c[i]));
      m = Math.max(m, Math.abs(a[i]));
    }
    return `${name} vs ${ref} max|Δ| ${e.toExponential(2)} (max|y| ${m.toFixed(1)})`;
  };
  console.log(`${build} T=${T} K=${K} N=${N}: ${diff("linearQ4", "gemmQ4Tiles")}`);
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(runs).map((n) => [n, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, f] of Object.entries(runs)) {
      const t0 = performance.now();
      f(y);
      times[name].push(performance.now() - t0);
    }
  }
  for (const [name, t] of Object.entries(times)) {
    t.sort((p, q) => p - q);
    const ms = t[ROUNDS >> 1];
    console.log(`  ${name.padEnd(12)} ${ms.toFixed(2).padStart(7)} ms  ${((T * K * N) / ms / 1e6).toFixed(1).padStart(5)} G MACs/s`);
  }
  arena.reset(mark);
}
