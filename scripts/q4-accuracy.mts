// q4 (and int8) against f32 on a synthetic model: top-1 agreement and mean KL(f32 ‖ quantized)
// over 128 positions of one forward pass. npx tsx scripts/q4-accuracy.mts [preset]
import { DecoderModel } from "../src/models/decoder.js";
import { syntheticConfig } from "../src/models/families/index.js";
import { SyntheticSource } from "../src/models/synthetic.js";
const preset = process.argv[2] ?? "opt-125m";
const config = syntheticConfig(preset);
const ids = Array.from({ length: 128 }, (_, i) => (i * 7919 + 13) % 30000);
const run = async (dtype: "f32" | "int8" | "q4") => {
  const m = await DecoderModel.load(config, new SyntheticSource(config, 0), { dtype, threads: 1 });
  const r = m.forward([ids]).logits;
  m.dispose();
  return r;
};
const ref = await run("f32");
const V = ref.length / ids.length;
const logp = (x: Float32Array) => {
  let mx = -Infinity;
  for (const v of x) mx = Math.max(mx, v);
  let s = 0;
  for (const v of x) s += Math.exp(v - mx);
  return Float64Array.from(x, (v) => v - mx - Math.log(s));
};
for (const dtype of ["int8", "q4"] as const) {
  const got = await run(dtype);
  let top1 = 0,
    kl = 0;
  for (let t = 0; t < ids.length; t++) {
    const a = ref.subarray(t * V, (t + 1) * V),
      b = got.subarray(t * V, (t + 1) * V);
    if (a.indexOf(Math.max(...a)) === b.indexOf(Math.max(...b))) top1++;
    const la = logp(a),
      lb = logp(b);
    for (let j = 0; j < V; j++) kl += Math.exp(la[j]) * (la[j] - lb[j]);
  }
  console.log(
    `${preset} ${dtype} vs f32: top-1 ${top1}/${ids.length} (${((100 * top1) / ids.length).toFixed(1)}%), mean KL ${(kl / ids.length).toExponential(2)} nats`,
  );
}
