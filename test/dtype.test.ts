// Weight dtypes: f16 storage and int8 weight-only quantization, against the f32 reference and
// against themselves across threads and the KV cache.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { openSafetensors } from "../src/formats/safetensors.js";
import { parseOptConfig } from "../src/models/families/index.js";
import { DecoderModel } from "../src/models/decoder.js";
import { SyntheticSource, syntheticConfig } from "../src/models/synthetic.js";
import { generate } from "../src/generate/index.js";
import { BUILDS, FIXTURE_DIR, maxAbsDiff, reference } from "./helpers.js";

const ref = reference();
const config = parseOptConfig(readFileSync(join(FIXTURE_DIR, "config.json"), "utf8"));
const f32File = () => openSafetensors(new Uint8Array(readFileSync(join(FIXTURE_DIR, "model.safetensors"))));
const f16File = () => openSafetensors(new Uint8Array(readFileSync(join(FIXTURE_DIR, "model.fp16.safetensors"))));

async function agreement(model: DecoderModel): Promise<number> {
  const g = await generate(model, undefined, ref.input_ids, { maxNewTokens: 32, ignoreEos: true });
  let n = 0;
  while (n < 32 && g.new_tokens[n] === ref.generation.new_tokens[n]) n++;
  return n;
}

describe("f16 weights", () => {
  for (const build of BUILDS) {
    for (const [name, open] of [
      ["F32 file", f32File],
      ["F16 file", f16File],
    ] as const) {
      it(`${build}, ${name}: the fixture's weights are f16-exact, so logits match transformers to 1e-4`, async () => {
        const m = await DecoderModel.load(config, open(), { dtype: "f16", build, threads: 1 });
        const d = maxAbsDiff(m.forward([ref.input_ids]).logits, ref.logits.flat());
        console.log(`f16 ${build} ${name}: logits max|Δ| ${d.max.toExponential(2)}`);
        expect(d.max).toBeLessThanOrEqual(1e-4);
        expect(await agreement(m)).toBe(32);
      });
    }
  }
});

describe("int8 weights", () => {
  it("the accuracy cost on the fixture is reported and bounded", async () => {
    for (const group of [16, 64]) {
      const m = await DecoderModel.load(config, f32File(), { dtype: "int8", int8Group: group, threads: 1 });
      const d = maxAbsDiff(m.forward([ref.input_ids]).logits, ref.logits.flat());
      const agree = await agreement(m);
      console.log(`int8 group ${group}: logits max|Δ| vs transformers ${d.max.toExponential(2)}, greedy agrees for ${agree}/32 tokens`);
      // Quantization error is ~1% of a logit here; a broken int8 path moves logits by whole units.
      expect(d.max).toBeLessThan(0.5);
      // The reference's 5th step has a top-2 margin of 0.05 logits: no 8-bit rounding can promise it.
      expect(agree).toBeGreaterThanOrEqual(4);
      if (group === 16) expect(agree).toBe(32);
    }
  });
});

describe("compressed weights at OPT-125M's shape", () => {
  const sc = syntheticConfig("opt-125m");
  const A = [2, 31414, 232, 328, 20, 5, 2441, 9, 5, 232, 4];
  for (const dtype of ["f16", "int8"] as const) {
    it(`${dtype}: two threads equal one; cached decode equals the uncached forward; close to f32`, async () => {
      const one = await DecoderModel.load(sc, new SyntheticSource(sc, 1), { dtype, build: "simd", threads: 1 });
      const two = await DecoderModel.load(sc, new SyntheticSource(sc, 1), { dtype, build: "simd", threads: 2 });
      try {
        const a = one.forward([A]).logits;
        expect(maxAbsDiff(a, two.forward([A]).logits).max).toBe(0);
        const cache = one.createCache(1, 16);
        one.forward([A.slice(0, 8)], { cache, logits: "last" });
        const steps = A.slice(8).map((id) => one.forward([[id]], { cache, logits: "last" }).logits);
        cache.release();
        const V = sc.vocab_size;
        // int8 decode (T = 1) multiplies 16-bit-quantized activations, prefill (T > 1) f32 ones: they
        // agree to the activations' rounding, not to f32's.
        const tol = dtype === "int8" ? 1e-3 : 1e-4;
        steps.forEach((row, j) => expect(maxAbsDiff(row, a.subarray((8 + j) * V, (9 + j) * V)).max).toBeLessThanOrEqual(tol));
        expect(one.arena.used).toBeLessThan(dtype === "f16" ? 260 << 20 : 185 << 20);
      } finally {
        two.dispose();
      }
    });
  }
});

describe("saving int8 weights", () => {
  it("a saved int8 checkpoint reloads to the same model, without quantizing again", async () => {
    const { modelTensors } = await import("../src/models/save.js");
    const { writeSafetensors } = await import("../src/formats/safetensors.js");
    const q = await DecoderModel.load(config, f32File(), { dtype: "int8", threads: 1 });
    const { tensors, metadata } = modelTensors(q);
    expect(tensors.find((t) => t.name === "model.decoder.layers.0.fc1.weight")!.dtype).toBe("I8");
    expect(tensors.find((t) => t.name === "model.decoder.layers.0.fc1.weight_scale")!.shape).toEqual([256, 1]);
    expect(tensors.find((t) => t.name === "model.decoder.embed_tokens.weight")!.dtype).toBe("F16");
    const file = writeSafetensors(tensors, metadata);
    const back = await DecoderModel.load(config, openSafetensors(file, "int8.safetensors"), { threads: 1 });
    expect(back.dtype).toBe("int8");
    expect(maxAbsDiff(back.forward([ref.input_ids]).logits, q.forward([ref.input_ids]).logits).max).toBe(0);
    await expect(DecoderModel.load(config, openSafetensors(file, "int8.safetensors"), { dtype: "f32" })).rejects.toThrow(
      /int8-quantized; load it with dtype int8/,
    );
    // A quantized matrix without its scales is refused, naming it.
    const noScale = writeSafetensors(
      tensors.filter((t) => t.name !== "model.decoder.layers.1.fc2.weight_scale"),
      metadata,
    );
    await expect(DecoderModel.load(config, openSafetensors(noScale, "bad.safetensors"))).rejects.toThrow(
      /'model.decoder.layers.1.fc2.weight' has no 'model.decoder.layers.1.fc2.weight_scale'/,
    );
  });
});
