// Model parity against Hugging Face transformers' outputs for the tiny OPT fixture, in every
// weight format and every wasm build: logits, every layer's hidden states, greedy generation
// (cached and uncached) and the left-padded batch.
import { describe, expect, it, beforeAll } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { openSafetensors } from "../src/formats/safetensors.js";
import { openPytorchBin } from "../src/formats/pytorch.js";
import { parseOptConfig } from "../src/models/families/index.js";
import { DecoderModel } from "../src/models/decoder.js";
import { greedyBatch } from "../src/generate/index.js";
import { argmax } from "../src/generate/sampling.js";
import { generate } from "../src/generate/index.js";
import { BUILDS, closeness, FIXTURE_DIR, maxAbsDiff, reference } from "./helpers.js";

const ref = reference();
const config = parseOptConfig(readFileSync(join(FIXTURE_DIR, "config.json"), "utf8"));
const FILES: [string, (b: Uint8Array) => ReturnType<typeof openSafetensors> | ReturnType<typeof openPytorchBin>][] = [
  ["model.safetensors", (b) => openSafetensors(b, "model.safetensors")],
  ["model.fp16.safetensors", (b) => openSafetensors(b, "model.fp16.safetensors")],
  ["pytorch_model.bin", (b) => openPytorchBin(b, "pytorch_model.bin")],
  ["pytorch_model.prefixed.bin", (b) => openPytorchBin(b, "pytorch_model.prefixed.bin")],
];
const LOGIT_TOL = 1e-4;
const report: string[] = [];

function uncachedGreedy(model: DecoderModel, prompt: number[], n: number): number[] {
  const seq = [...prompt];
  for (let i = 0; i < n; i++) {
    const r = model.forward([seq], { logits: "last" });
    seq.push(argmax(r.logits));
  }
  return seq.slice(prompt.length);
}

for (const build of BUILDS) {
  for (const [file, open] of FILES) {
    describe(`tiny OPT, ${file}, ${build} build`, () => {
      let model: DecoderModel;
      beforeAll(async () => {
        const src = open(new Uint8Array(readFileSync(join(FIXTURE_DIR, file))));
        model = await DecoderModel.load(config, src, { build, label: file });
      });

      it("logits and every layer's hidden states match transformers", () => {
        const r = model.forward([ref.input_ids], { outputHiddenStates: true });
        const logits = maxAbsDiff(r.logits, ref.logits.flat());
        const hs = r.hiddenStates!;
        const emb = maxAbsDiff(hs.embeddings, ref.hidden_states.embeddings.flat());
        const layers = hs.layers.map((h, i) => maxAbsDiff(h, ref.hidden_states.layers[i].flat()).max);
        // The final LayerNorm's output reaches ~450 here: f32 rounding is relative to that.
        const fin = closeness(hs.final, ref.hidden_states.final.flat(), 1e-4, 1e-5);
        report.push(
          `${build} ${file}: logits max|Δ| ${logits.max.toExponential(2)}, embeddings ${emb.max.toExponential(2)}, ` +
            `layers ${layers.map((v) => v.toExponential(2)).join(" ")}, final ${fin.maxAbs.toExponential(2)}`,
        );
        console.log(report[report.length - 1]);
        expect(logits.max).toBeLessThanOrEqual(LOGIT_TOL);
        expect(emb.max).toBeLessThanOrEqual(1e-5);
        for (const v of layers) expect(v).toBeLessThanOrEqual(LOGIT_TOL);
        expect(fin.ratio, fin.message).toBeLessThanOrEqual(1);
        const V = config.vocab_size;
        const am = ref.input_ids.map((_: number, t: number) => argmax(r.logits, t * V, (t + 1) * V));
        expect(am).toEqual(ref.argmax);
      });

      it("greedy generation with the KV cache gives transformers' 32 tokens, and so does the uncached loop", async () => {
        const g = await generate(model, undefined, ref.input_ids, { maxNewTokens: 32, ignoreEos: true });
        expect(g.new_tokens).toEqual(ref.generation.new_tokens);
        expect(uncachedGreedy(model, ref.input_ids, 32)).toEqual(ref.generation.new_tokens);
      });

      it("left-padded batch: logits of the valid positions and batched greedy generation", async () => {
        const pb = ref.padded_batch;
        const r = model.forward(pb.input_ids, { attentionMask: pb.attention_mask });
        const V = config.vocab_size;
        const T = pb.input_ids[0].length;
        pb.rows.forEach((row: { first_valid_position: number; logits: number[][] }, b: number) => {
          const ours = r.logits.subarray((b * T + row.first_valid_position) * V, (b + 1) * T * V);
          const d = maxAbsDiff(ours, row.logits.flat());
          expect(d.max, `row ${b}`).toBeLessThanOrEqual(LOGIT_TOL);
        });
        const gen = await greedyBatch(model, pb.input_ids, pb.attention_mask, pb.generation.new_tokens[0].length);
        expect(gen).toEqual(pb.generation.new_tokens);
      });
    });
  }
}
