// How a decode step's time grows with its batch (B rows, one token each, over B caches): the
// engine's continuous batching pays off only where a step of B rows costs less than B steps.
import { DecoderModel } from "../src/models/decoder.js";
import { syntheticConfig } from "../src/models/families/index.js";
import { SyntheticSource } from "../src/models/synthetic.js";
const preset = process.argv[2] ?? "opt-125m";
for (const dtype of ["f32", "int8", "q4"] as const) {
  const config = syntheticConfig(preset);
  const m = await DecoderModel.load(config, new SyntheticSource(config, 0), { dtype, threads: 1 });
  const caches = Array.from({ length: 16 }, () => m.createCache(1, 64));
  for (const c of caches) m.forward([[5, 6, 7, 8]], { cache: c, logits: "none" });
  const row: string[] = [];
  let one = 0;
  for (const B of [1, 2, 4, 8, 16]) {
    const t: number[] = [];
    for (let r = 0; r < 7; r++) {
      const cs = caches.slice(0, B);
      for (const c of cs) c.length = 4; // rewind: the same positions each round
      const t0 = performance.now();
      m.forward(
        cs.map(() => [9]),
        { caches: cs, logits: "last" },
      );
      t.push(performance.now() - t0);
    }
    t.sort((a, b) => a - b);
    const ms = t[3];
    if (B === 1) one = ms;
    row.push(`B=${B} ${ms.toFixed(1)} ms (${((B * one) / ms).toFixed(2)}× tokens/s of B=1)`);
  }
  console.log(`${preset} ${dtype}: ${row.join(", ")}`);
  m.dispose();
}
