// Where one configuration's time goes: embeddings, the 12 decoder layers, and the lm_head, timed
// separately through the model's step API (begin / embed / layer / logits), for a 128-token
// prefill with every row's logits and for decode steps after it. Medians over 5 rounds.
//
//   node --experimental-wasm-relaxed-simd --import tsx bench/model-breakdown.ts [build] [dtype] [threads] [model] [embed dtype]
//   e.g. ... bench/model-breakdown.ts relaxed int8 1 smollm2-135m int8
import { DecoderModel, type LoadOptions } from "../src/models/decoder.js";
import { syntheticConfig, SyntheticSource } from "../src/models/synthetic.js";
import { median, promptIds } from "./model-common.js";

const [build = "relaxed", dtype = "f32", threadsArg = "1", preset = "opt-125m", embedDType] = process.argv.slice(2);
const threads = Number(threadsArg);
const config = syntheticConfig(preset);
// dtype and threads are passed as given: run this only with options model.ts has (see load-options.ts).
const model = await DecoderModel.load(config, new SyntheticSource(config, 1), { build, dtype, threads, embedDType } as LoadOptions);
const T = 128;
const STEPS = 32;
const ids = promptIds(1, T, config.vocab_size);
const cache = model.createCache(1, T + STEPS);

/** [embed, layers, lm_head] ms for one call. */
function parts(tokens: number[], rows: "all" | "last"): number[] {
  const s = model.begin([tokens], { cache, maxLogitRows: rows === "all" ? tokens.length : 1 });
  try {
    const t0 = performance.now();
    model.embed(s);
    const t1 = performance.now();
    for (let i = 0; i < model.dims.L; i++) model.layer(i, s);
    const t2 = performance.now();
    model.logits(s, rows === "all" ? tokens.map((_, i) => i) : [tokens.length - 1]);
    return [t1 - t0, t2 - t1, performance.now() - t2];
  } finally {
    s.end();
  }
}

const prefill: number[][] = [];
const decode: number[][] = [];
for (let r = 0; r < 5; r++) {
  cache.clear();
  prefill.push(parts(ids, "all"));
  cache.clear();
  parts(ids, "last");
  for (let j = 0; j < STEPS; j++) decode.push(parts([3 + j], "last"));
}
const show = (xs: number[][]) => ["embed", "layers", "lm_head"].map((n, k) => `${n} ${median(xs.map((x) => x[k])).toFixed(2)}`).join(", ");
console.log(`${model.build} ${dtype} ${threads}t — prefill ${T} (all logits), ms: ${show(prefill)}`);
console.log(`${model.build} ${dtype} ${threads}t — decode step after ${T}, ms: ${show(decode)}`);
process.exit(0);
