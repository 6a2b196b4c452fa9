// Where a decode token's time goes, kernel by kernel (one thread): every export of the kernel module
// is wrapped in a timer, then decode steps after a prompt are run through the step API; the time
// outside all kernels is the JS step (planning, job records, typed-array views, the cache
// bookkeeping). Medians over rounds of the per-token sums.
//
//   node --experimental-wasm-relaxed-simd --import tsx scripts/decode-profile.mts
//       [--model opt-125m] [--dtype q4] [--embed-dtype q4] [--build relaxed] [--prompt 128]
//       [--tokens 16] [--rounds 5] [--no-wrap]   (--no-wrap: kernels unwrapped, for node --cpu-prof)
//
// The wrapper costs ~0.1 µs a call (a performance.now pair): a token makes ~150 kernel calls, so the
// "outside kernels" line carries ~15 µs of the profiler's own.
import { DecoderModel, type LoadOptions } from "../src/models/decoder.js";
import { syntheticConfig } from "../src/models/families/index.js";
import { SyntheticSource } from "../src/models/synthetic.js";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const PRESET = arg("model", "opt-125m");
const DTYPE = arg("dtype", "q4");
const EMBED = arg("embed-dtype", "");
const BUILD = arg("build", "relaxed");
const PROMPT = Number(arg("prompt", "128"));
const TOKENS = Number(arg("tokens", "16"));
const ROUNDS = Number(arg("rounds", "5"));

const config = syntheticConfig(PRESET);
const opts = { build: BUILD, dtype: DTYPE, threads: 1, ...(EMBED ? { embedDType: EMBED } : {}) } as LoadOptions;
const model = await DecoderModel.load(config, new SyntheticSource(config, 1), opts);

// Wrap every kernel: time and calls per export name.
const spent = new Map<string, number>();
const calls = new Map<string, number>();
const raw = model.k as unknown as Record<string, unknown>;
const wrapped: Record<string, unknown> = {};
for (const [name, f] of Object.entries(raw)) {
  if (typeof f !== "function") {
    wrapped[name] = f;
    continue;
  }
  const fn = f as (...a: number[]) => unknown;
  wrapped[name] = (
    a0: number,
    a1: number,
    a2: number,
    a3: number,
    a4: number,
    a5: number,
    a6: number,
    a7: number,
    a8: number,
    a9: number,
    a10: number,
    a11: number,
    a12: number,
    a13: number,
    a14: number,
    a15: number,
  ) => {
    const t0 = performance.now();
    const r = fn(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15);
    spent.set(name, (spent.get(name) ?? 0) + performance.now() - t0);
    calls.set(name, (calls.get(name) ?? 0) + 1);
    return r;
  };
}
if (!process.argv.includes("--no-wrap")) (model as unknown as { k: unknown }).k = wrapped;

const cache = model.createCache(1, PROMPT + TOKENS + 1);
const prompt = Array.from({ length: PROMPT }, (_, i) => (i * 7919 + 3) % config.vocab_size);
const perToken: Map<string, number>[] = [];
const totals: number[] = [];
for (let r = 0; r < ROUNDS + 1; r++) {
  cache.clear();
  model.forward([prompt], { cache, logits: "last" });
  spent.clear();
  calls.clear();
  const t0 = performance.now();
  for (let j = 0; j < TOKENS; j++) model.forward([[(j * 31 + 5) % config.vocab_size]], { cache, logits: "last" });
  const wall = performance.now() - t0;
  if (r === 0) continue; // warm-up round
  totals.push(wall / TOKENS);
  perToken.push(new Map([...spent].map(([k, v]) => [k, v / TOKENS])));
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const names = [...new Set(perToken.flatMap((m) => [...m.keys()]))];
const rows = names.map((n) => ({ n, ms: median(perToken.map((m) => m.get(n) ?? 0)), calls: (calls.get(n) ?? 0) / TOKENS }));
rows.sort((a, b) => b.ms - a.ms);
const total = median(totals);
const inKernels = median(perToken.map((m) => [...m.values()].reduce((a, b) => a + b, 0)));
console.log(
  `${PRESET} ${DTYPE}${EMBED ? ` (embed ${EMBED})` : ""} ${model.build}, 1 thread, decode after ${PROMPT}: ${total.toFixed(3)} ms/token (median of ${ROUNDS} rounds × ${TOKENS} tokens)`,
);
for (const { n, ms, calls: c } of rows) {
  console.log(
    `  ${n.padEnd(22)} ${ms.toFixed(3).padStart(7)} ms  ${((100 * ms) / total).toFixed(1).padStart(5)} %  ${c.toFixed(0).padStart(4)} calls`,
  );
}
console.log(
  `  ${"(outside kernels)".padEnd(22)} ${(total - inKernels).toFixed(3).padStart(7)} ms  ${((100 * (total - inKernels)) / total).toFixed(1).padStart(5)} %`,
);
process.exit(0);
