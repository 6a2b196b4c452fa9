// What a long context costs a decode step, with an f32 and an f16 KV cache (issue #12): ms per
// new token after a short prompt and after a long one, on a synthetic model, per weight dtype.
//
//   npx tsx scripts/kv-context.mts [--preset opt-125m] [--dtypes f32,int8] [--short 32] [--long 1024]
//                                  [--rounds 31] [--threads 1]
//
// For each weight dtype one model is loaded and four caches are prefilled (f32 and f16 KV, short
// and long prompt); then every round decodes one token on each of the four in turn (the cache
// rewound to its prompt each time, so every step sees the same context), timed around forward().
// Medians over the rounds (and the fastest round, in brackets: on a shared machine the least
// disturbed), after two warm-up rounds; the ratios come from one run, interleaved. The attention
// kernels alone are then timed the same way on the same caches (12 layers' worth per step, one
// query row): what the long context adds to a step is
// mostly theirs, and their GB/s say whether reading the cache is what limits it; "warm" repeats
// layer 0's long cache instead (3.1 MB of f16, 6.3 MB of f32; L3 holds 8 MB here), which leaves
// mostly the compute.
import { parseArgs } from "node:util";
import { DecoderModel, type KVCache, type KVDType } from "../src/models/decoder.js";
import { syntheticConfig } from "../src/models/families/index.js";
import { SyntheticSource } from "../src/models/synthetic.js";
import type { WeightDType } from "../src/models/weights.js";

const { values: a } = parseArgs({
  options: {
    preset: { type: "string", default: "opt-125m" },
    dtypes: { type: "string", default: "f32,int8" },
    short: { type: "string", default: "32" },
    long: { type: "string", default: "1024" },
    rounds: { type: "string", default: "31" },
    threads: { type: "string", default: "1" },
  },
});
const SHORT = Number(a.short),
  LONG = Number(a.long),
  ROUNDS = Number(a.rounds),
  THREADS = Number(a.threads);
const KINDS: KVDType[] = ["f32", "f16"];
const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[xs.length >> 1];
const fmt = (xs: number[]) => `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)})`;

const config = syntheticConfig(a.preset!);
console.log(
  `${a.preset} (synthetic, seed 0), ${THREADS} thread${THREADS > 1 ? "s" : ""}; decode after ${SHORT} and ${LONG} prompt tokens; ` +
    `medians of ${ROUNDS} rounds`,
);
for (const dtype of a.dtypes!.split(",") as WeightDType[]) {
  const m = await DecoderModel.load(config, new SyntheticSource(config, 0), { dtype, threads: THREADS });
  const { L, H, Hkv, D, V } = m.dims;
  const prompt = (n: number) => Array.from({ length: n }, (_, i) => (i * 7919 + 13) % V);
  // Four caches: [kv dtype][short | long], prefilled once.
  const t0 = performance.now();
  const caches = KINDS.map((kvDtype) =>
    [SHORT, LONG].map((n) => {
      const c = m.createCache(1, n + 1, { kvDtype });
      m.forward([prompt(n)], { cache: c, logits: "none" });
      return c;
    }),
  );
  const prefillS = (performance.now() - t0) / 1000;
  const rewind = (c: KVCache, n: number) => {
    c.length = n;
    c.seen[0] = n;
  };
  const decode: number[][][] = KINDS.map(() => [[], []]);
  for (let r = 0; r < ROUNDS + 2; r++) {
    KINDS.forEach((_, k) =>
      [SHORT, LONG].forEach((n, j) => {
        const c = caches[k][j];
        rewind(c, n);
        const t = performance.now();
        m.forward([[42]], { cache: c, logits: "last" });
        if (r >= 2) decode[k][j].push(performance.now() - t);
      }),
    );
  }

  // The attention kernels alone on the same caches: one query row per layer, as a decode step calls them.
  const mark = m.arena.mark();
  const qPtr = m.arena.alloc(H * D * 4),
    out = m.arena.alloc(H * D * 4),
    scratch = m.arena.alloc((LONG + 1) * 4);
  m.arena.f32(qPtr, H * D).set(Float32Array.from({ length: H * D }, (_, i) => Math.sin(i)));
  const attention: number[][][] = KINDS.map(() => [[], [], []]); // short, long, long warm
  for (let r = 0; r < ROUNDS + 2; r++) {
    KINDS.forEach((kvDtype, k) =>
      [SHORT, LONG, LONG].forEach((n, j) => {
        const c = caches[k][Math.min(j, 1)];
        const fn = kvDtype === "f16" ? m.k.attentionF16 : m.k.attention;
        const t = performance.now();
        for (let l = 0; l < L; l++) {
          const at = j === 2 ? 0 : l;
          fn(out, qPtr, c.k[at][0], c.v[at][0], 0, 0, scratch, 1, n, H, Hkv, D, c.maxCtx, 1 / Math.sqrt(D), 0, H);
        }
        if (r >= 2) attention[k][j].push(performance.now() - t);
      }),
    );
  }
  m.arena.reset(mark);
  for (const row of [...caches].reverse()) for (const c of [...row].reverse()) c.release();

  console.log(`\nweights ${m.dtype} (build ${m.build}; prefills ${prefillS.toFixed(1)} s); ms, median (fastest)`);
  console.log(
    `| KV | decode after ${SHORT} | after ${LONG} | ratio | attention after ${SHORT} | after ${LONG} | GB/s of cache read | warm |`,
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  KINDS.forEach((kvDtype, k) => {
    const [dl, al] = [median(decode[k][1]), median(attention[k][1])];
    const bytes = 2 * L * Hkv * (LONG + 1) * D * (kvDtype === "f16" ? 2 : 4);
    console.log(
      `| ${kvDtype} | ${fmt(decode[k][0])} | ${fmt(decode[k][1])} | ${(dl / median(decode[k][0])).toFixed(2)}× ` +
        `(${(Math.min(...decode[k][1]) / Math.min(...decode[k][0])).toFixed(2)}×) | ${fmt(attention[k][0])} | ${fmt(attention[k][1])} | ` +
        `${(bytes / al / 1e6).toFixed(1)} | ${fmt(attention[k][2])} |`,
    );
  });
  const long = (k: number) => median(decode[k][1]);
  const att = (k: number) => median(attention[k][1]);
  console.log(`f16 / f32 KV after ${LONG}: decode ${(long(1) / long(0)).toFixed(2)}×, attention ${(att(1) / att(0)).toFixed(2)}×`);
  m.dispose();
}
