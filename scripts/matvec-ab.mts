// A/B of the T = 1 quantized matvecs between two builds of the kernels, in one run: OPT-125M's
// four layer shapes, each from DRAM (copies rotated past 64 MB, as a decode step reads them) and
// L2-resident (one 768→768 matrix, 369 KB of q4), ns per row-block of 32 weights and GB/s of weight
// bytes. Rounds interleave the two builds; medians.
//
//   node --experimental-wasm-relaxed-simd --import tsx scripts/matvec-ab.mts A.wasm B.wasm
//       [--kernel linearQ4|matvecI8A16|linearF16] [--build relaxed|simd] [--rounds 9] [--shapes KxN,…]
// (linearF16: the lm_head shape 768→50272 instead of the layers')
import { readFileSync } from "node:fs";
import { Arena } from "../src/arena.js";
import { loadWasm, type KernelExports } from "../src/wasm.js";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const [fileA, fileB] = process.argv.slice(2, 4);
const KERNEL = arg("kernel", "linearQ4");
const BUILD = arg("build", "relaxed") as "relaxed" | "simd";
const ROUNDS = Number(arg("rounds", "9"));
const G = 64;
const ROTATE = 64 << 20;

const SHAPES = arg("shapes", ""); // e.g. 576x576,576x1536,1536x576 (K×N from DRAM, the first also L2-resident)
const custom = SHAPES.split(",")
  .filter(Boolean)
  .map((kn) => kn.split("x").map(Number));
const shapes = custom.length
  ? [...custom.map(([K, N]) => ({ K, N, rotate: true })), { K: custom[0][0], N: custom[0][1], rotate: false }]
  : KERNEL === "linearF16"
    ? [
        { K: 768, N: 50272, rotate: true },
        { K: 768, N: 256, rotate: false },
      ]
    : [
        { K: 768, N: 768, rotate: true },
        { K: 768, N: 3072, rotate: true },
        { K: 3072, N: 768, rotate: true },
        { K: 768, N: 768, rotate: false },
      ];

interface Side {
  k: KernelExports;
  a: Arena;
}
async function side(file: string): Promise<Side> {
  const wasm = await loadWasm({ build: BUILD, bytes: readFileSync(file) });
  return { k: wasm.k, a: new Arena(wasm) };
}
const sides = [await side(fileA), await side(fileB)];

let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(`${KERNEL} ${BUILD}: A = ${fileA}, B = ${fileB}; ns per row-block of 32 (GB/s), medians of ${ROUNDS}`);
for (const { K, N, rotate } of shapes) {
  const nb = K / 32;
  const q4 = KERNEL === "linearQ4";
  const f16 = KERNEL === "linearF16";
  const bytes = q4 ? (N * K) / 2 + N * nb * 4 : f16 ? N * K * 2 : N * K + N * (K / G) * 4;
  const copies = rotate ? Math.ceil(ROTATE / bytes) : 1;
  const W = Float32Array.from({ length: K * N }, rnd);
  const X = Float32Array.from({ length: K }, rnd);
  const runs: (() => void)[] = [];
  const outs: (() => Float32Array)[] = [];
  for (const { k, a } of sides) {
    a.reserve(K * N * 4 + copies * (bytes + 256) + K * 8 + N * 4 + 65536);
    const m0 = a.mark();
    const src = a.put(W);
    const qB = q4 ? (N * K) / 2 : f16 ? N * K * 2 : N * K;
    const sB = bytes - qB;
    const q0 = a.alloc(qB);
    const s0 = a.alloc(sB);
    if (q4) k.quantizeQ4(q0, s0, src, N, K);
    else if (f16) k.f32ToF16Rows(q0, src, N * K);
    else k.quantizeI8(q0, s0, src, N, K, G);
    const qc = a.u8(q0, qB).slice();
    const sc = a.u8(s0, sB).slice();
    a.reset(m0);
    const qs: number[] = [];
    const ss: number[] = [];
    for (let i = 0; i < copies; i++) {
      qs.push(a.alloc(qB));
      a.u8(qs[i], qB).set(qc);
      ss.push(a.alloc(sB));
      a.u8(ss[i], sB).set(sc);
    }
    const x = a.put(X);
    const xq = a.alloc(2 * K);
    const xs = a.alloc(nb * 8 + 16);
    const y = a.alloc(N * 4);
    if (q4) k.quantizeActI8(xq, xs, x, 1, K, 8);
    else k.quantizeActI16(xq, xs, x, K);
    let i = 0;
    runs.push(
      f16
        ? () => {
            k.linearF16(y, x, qs[i % copies], 0, 1, K, N, 0, N, 0);
            i++;
          }
        : q4
          ? () => {
              k.linearQ4(y, xq, xs, qs[i % copies], ss[i % copies], 0, 1, K, N, 0, N);
              i++;
            }
          : () => {
              k.matvecI8A16(y, xq, xs, qs[i % copies], ss[i % copies], 0, K, 0, N, G);
              i++;
            },
    );
    outs.push(() => a.f32(y, N).slice());
  }
  // Same inputs, same outputs? (bit-identical or the largest difference)
  runs[0]();
  runs[1]();
  const [ya, yb] = [outs[0](), outs[1]()];
  let diff = 0;
  for (let o = 0; o < N; o++) diff = Math.max(diff, Math.abs(ya[o] - yb[o]) / (Math.abs(ya[o]) + 1e-3));
  const calls = Math.max(3, Math.round(((rotate ? 16 : 64) * 2.4e6) / (N * K)));
  const t: number[][] = [[], []];
  for (let r = 0; r < ROUNDS; r++) {
    for (let s = 0; s < 2; s++) {
      for (let c = 0; c < 2; c++) runs[s]();
      const t0 = performance.now();
      for (let c = 0; c < calls; c++) runs[s]();
      t[s].push(((performance.now() - t0) * 1e6) / calls);
    }
  }
  const rb = (N * K) / 32; // (linearF16: blocks of 32 weights likewise)
  const fmt = (ns: number) => `${(ns / rb).toFixed(3)} ns (${(bytes / ns).toFixed(2)} GB/s)`;
  const [ma, mb] = [median(t[0]), median(t[1])];
  console.log(
    `  ${K}→${N} ${rotate ? `DRAM ×${copies}` : "L2"}: A ${fmt(ma)}, B ${fmt(mb)}, B/A ${(mb / ma).toFixed(3)}; ` +
      (diff === 0 ? "bit-identical" : `max rel diff ${diff.toExponential(2)}`),
  );
}
process.exit(0);
