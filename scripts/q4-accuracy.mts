// q4 (and int8) against f32 on a synthetic model: top-1 agreement and mean KL(f32 ‖ quantized)
// over 128 positions of one forward pass; q4 also with a q4 embedding / lm_head.
// npx tsx scripts/q4-accuracy.mts [preset]
import { DecoderModel } from "../src/models/decoder.js";
import { syntheticConfig } from "../src/models/families/index.js";
import { SyntheticSource } from "../src/models/synthetic.js";
const preset = process.argv[2] ?? "opt-125m";
const config = syntheticConfig(preset);
const ids = Array.from({ length: 128 }, (_, i) => (i * 7919 + 13) % 30000);
type Variant = { dtype: "f32" | "int8" | "q4"; embedDType?: "int8" | "q4" };
const run = async (v: Variant) => {
  const m = await DecoderModel.load(config, new SyntheticSource(config, 0), { ...v, threads: 1 });
  const r = m.forward([ids]).logits;
  m.dispose();
  return r;
};
const ref = await run({ dtype: "f32" });
const V = ref.length / ids.length;
const logp = (x: Float32Array) => {
  let mx = -Infinity;
  for (const v of x) mx = Math.max(mx, v);
  let s = 0;
  for (const v of x) s += Math.exp(v - mx);
  return Float64Array.from(x, (v) => v - mx - Math.log(s));
};
// How close the reference's top two logits are: random weights make near-ties, which any
// quantization error flips; the error's RMS per logit is printed next to it.
const gaps: number[] = [];
for (let t = 0; t < ids.length; t++) {
  const a = Array.from(ref.subarray(t * V, (t + 1) * V)).sort((x, y) => y - x);
  gaps.push(a[0] - a[1]);
}
gaps.sort((x, y) => x - y);
console.log(`${preset} f32: top-1 − top-2 logit gap, median ${gaps[64].toFixed(4)}, 10th percentile ${gaps[12].toFixed(4)}`);
const variants: Variant[] = [{ dtype: "int8" }, { dtype: "q4" }, { dtype: "q4", embedDType: "q4" }];
for (const v of variants) {
  const got = await run(v);
  let top1 = 0,
    kl = 0,
    se = 0;
  for (let i = 0; i < ref.length; i++) se += (ref[i] - got[i]) ** 2;
  for (let t = 0; t < ids.length; t++) {
    const a = ref.subarray(t * V, (t + 1) * V),
      b = got.subarray(t * V, (t + 1) * V);
    if (a.indexOf(Math.max(...a)) === b.indexOf(Math.max(...b))) top1++;
    const la = logp(a),
      lb = logp(b);
    for (let j = 0; j < V; j++) kl += Math.exp(la[j]) * (la[j] - lb[j]);
  }
  console.log(
    `${preset} ${v.dtype}${v.embedDType ? ` (embedding ${v.embedDType})` : ""} vs f32: top-1 ${top1}/${ids.length} (${((100 * top1) / ids.length).toFixed(1)}%), mean KL ${(kl / ids.length).toExponential(2)} nats, logit error RMS ${Math.sqrt(se / ref.length).toFixed(4)}`,
  );
}
