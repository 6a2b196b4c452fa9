// Every OPT variant modeling_opt.py defines, against a float64 reference written from it
// (test/opt-reference.ts), on small seeded models: post-LN (OPT-350M), project_in/out, the other
// activations, no biases, no LayerNorm affine, an untied lm_head. The reference itself is first
// checked against transformers' own numbers for the fixture.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { openSafetensors, writeSafetensors } from "../src/formats/safetensors.js";
import { parseOptConfig, type OptConfig } from "../src/models/families/index.js";
import { DecoderModel } from "../src/models/decoder.js";
import { SyntheticSource } from "../src/models/synthetic.js";
import { modelTensors } from "../src/models/save.js";
import { referenceForward } from "./opt-reference.js";
import { asyncSource, FIXTURE_DIR, maxAbsDiff, reference } from "./helpers.js";

const ref = reference();
const tiny = parseOptConfig(readFileSync(join(FIXTURE_DIR, "config.json"), "utf8"));

it("the float64 reference reproduces transformers' logits for the fixture", () => {
  const src = openSafetensors(new Uint8Array(readFileSync(join(FIXTURE_DIR, "model.safetensors"))));
  const d = maxAbsDiff(referenceForward(tiny, src, ref.input_ids), ref.logits.flat());
  console.log(`float64 reference vs transformers: max|Δ| ${d.max.toExponential(2)}`);
  expect(d.max).toBeLessThan(1e-4);
});

const base: OptConfig = {
  ...tiny,
  vocab_size: 300,
  hidden_size: 48,
  num_attention_heads: 3,
  ffn_dim: 80,
  num_hidden_layers: 2,
  max_position_embeddings: 32,
  word_embed_proj_dim: 48,
};
const VARIANTS: [string, Partial<OptConfig>][] = [
  ["OPT-350M style: post-LN, no final LayerNorm, project_in/out (E=32 ≠ C=48)", { do_layer_norm_before: false, word_embed_proj_dim: 32 }],
  ["pre-LN with project_in/out", { word_embed_proj_dim: 32 }],
  ["_remove_final_layer_norm", { _remove_final_layer_norm: true }],
  ["gelu", { activation_function: "gelu" }],
  ["gelu_new (tanh)", { activation_function: "gelu_new" }],
  ["silu", { activation_function: "silu" }],
  ["enable_bias false", { enable_bias: false }],
  ["layer_norm_elementwise_affine false", { layer_norm_elementwise_affine: false }],
  ["untied lm_head", { tie_word_embeddings: false }],
];

describe("OPT variants vs the float64 reference", () => {
  for (const [name, patch] of VARIANTS) {
    it(name, async () => {
      const config = { ...base, ...patch };
      const src = new SyntheticSource(config, 11);
      const model = await DecoderModel.load(config, src, { threads: 1 });
      const ids = [2, 17, 250, 3, 99, 120, 7, 42, 5];
      const ours = model.forward([ids]).logits;
      const want = referenceForward(config, src, ids);
      const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const d = maxAbsDiff(ours, want);
      console.log(`${name}: max|Δ| vs float64 ${d.max.toExponential(2)} (logits up to ${scale.toFixed(3)})`);
      // Random small weights make small logits: hold the error to f32 precision relative to them.
      expect(d.max).toBeLessThan(1e-5 * scale);
      // and with left padding
      const padded = [1, 1, ...ids];
      const mask = [0, 0, ...ids.map(() => 1)];
      const p = model.forward([padded], { attentionMask: [mask] }).logits;
      const dp = maxAbsDiff(p.subarray(2 * config.vocab_size), referenceForward(config, src, ids));
      expect(dp.max).toBeLessThan(1e-5 * scale);
      // Everything streamed from an asynchronous source (layers, embeddings, positions, lm_head or
      // project_in/out included) gives the resident model's logits exactly, in f32 and with the
      // int8 conversions made on the fly at every pass.
      const { tensors, metadata } = modelTensors(model);
      const file = openSafetensors(writeSafetensors(tensors, metadata));
      for (const opts of [{}, { dtype: "int8", embedDType: "int8" }] as const) {
        const resident = await DecoderModel.load(config, file, { ...opts, threads: 1 });
        const streamed = await DecoderModel.load(config, asyncSource(file).source, {
          ...opts,
          threads: 1,
          residentLayers: false,
          residentEmbeddings: false,
        });
        expect(maxAbsDiff((await streamed.forwardAsync([ids])).logits, resident.forward([ids]).logits).max, JSON.stringify(opts)).toBe(0);
      }
    });
  }
});
