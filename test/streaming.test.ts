// A model whose checkpoint is read asynchronously (an AsyncTensorSource: HTTP ranges, a File, an
// object store): loaded resident, or streaming its layers through one slot with the next layer
// fetched while the current one runs. Here the source is an in-memory file behind promises that
// count reads and can fail on demand; test/ranged.test.ts reads the same files over HTTP.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { openSafetensors, writeSafetensors } from "../src/formats/index.js";
import { parseOptConfig } from "../src/models/families/index.js";
import { DecoderModel } from "../src/models/decoder.js";
import { modelTensors } from "../src/models/save.js";
import { SyntheticSource, syntheticConfig } from "../src/models/synthetic.js";
import { generate, greedyBatch } from "../src/generate/index.js";
import { inspectPrompt } from "../src/inspect.js";
import { asyncSource, FIXTURE_DIR, maxAbsDiff, reference } from "./helpers.js";

const ref = reference();
const config = parseOptConfig(readFileSync(join(FIXTURE_DIR, "config.json"), "utf8"));
const file = () => openSafetensors(new Uint8Array(readFileSync(join(FIXTURE_DIR, "model.safetensors"))));

describe("a checkpoint read asynchronously", () => {
  it("loaded resident: logits bit-identical to the synchronous file", async () => {
    const sync = await DecoderModel.load(config, file(), { build: "simd", threads: 1 });
    const { source } = asyncSource(file());
    const m = await DecoderModel.load(config, source, { build: "simd", threads: 1 });
    const a = sync.forward([ref.input_ids]).logits;
    expect(maxAbsDiff(m.forward([ref.input_ids]).logits, a).max).toBe(0);
    expect(maxAbsDiff((await m.forwardAsync([ref.input_ids])).logits, a).max).toBe(0);
  });

  it("streamed: transformers' logits and 32 greedy tokens, one read per layer per pass", async () => {
    const { source, stats } = asyncSource(file());
    const m = await DecoderModel.load(config, source, { build: "simd", threads: 1, residentLayers: false });
    expect(m.streamsLayers).toBe(true);
    const d = maxAbsDiff((await m.forwardAsync([ref.input_ids])).logits, ref.logits.flat());
    console.log(`streamed from an async source: logits max|Δ| vs transformers ${d.max.toExponential(2)}`);
    expect(d.max).toBeLessThanOrEqual(1e-4);
    const before = stats.reads;
    const g = await generate(m, undefined, ref.input_ids, { maxNewTokens: 32, ignoreEos: true });
    expect(g.new_tokens).toEqual(ref.generation.new_tokens);
    // 32 passes (prefill + 31 decode steps), each reading every layer once (the last layer's
    // prefetch of layer 0 serves the next pass); ±1 for the prefetch left at the end.
    expect(Math.abs(stats.reads - before - 32 * config.num_hidden_layers)).toBeLessThanOrEqual(1);
    const pb = ref.padded_batch;
    expect(await greedyBatch(m, pb.input_ids, pb.attention_mask, pb.generation.new_tokens[0].length)).toEqual(pb.generation.new_tokens);
    const ins = await inspectPrompt(m, { encode: () => [], decode: (ids) => ids.join(" ") }, ref.input_ids);
    expect(ins.layers).toHaveLength(config.num_hidden_layers + 1);
  });

  it("streamed: the synchronous forward is a clear error, and the model is unharmed", async () => {
    const { source } = asyncSource(file());
    const m = await DecoderModel.load(config, source, { build: "simd", threads: 1, residentLayers: false });
    const used = m.arena.used;
    expect(() => m.forward([ref.input_ids])).toThrow(/streams its layers from an asynchronous source.*forwardAsync/);
    expect(m.arena.used).toBe(used);
    expect((await generate(m, undefined, ref.input_ids, { maxNewTokens: 4, ignoreEos: true })).new_tokens).toEqual(
      ref.generation.new_tokens.slice(0, 4),
    );
  });

  it("a read that fails mid-pass is the reader's error; the step is released; the next call works", async () => {
    const { source, stats } = asyncSource(file());
    const m = await DecoderModel.load(config, source, { build: "simd", threads: 1, residentLayers: false });
    const used = m.arena.used;
    stats.failOn = "model.decoder.layers.1.fc1.weight";
    await expect(generate(m, undefined, ref.input_ids, { maxNewTokens: 4 })).rejects.toThrow(/layers\.1\.fc1\.weight.*connection reset/);
    expect(m.arena.used).toBe(used);
    // The prefetch that was in flight failed too: it must not be reused, nor reported as unhandled.
    stats.failOn = null;
    expect((await generate(m, undefined, ref.input_ids, { maxNewTokens: 8, ignoreEos: true })).new_tokens).toEqual(
      ref.generation.new_tokens.slice(0, 8),
    );
    expect(m.arena.used).toBe(used);
  });
});

describe("the embedding and lm_head streamed too (residentEmbeddings false)", () => {
  it("fixture: transformers' logits and greedy tokens with the lm_head read in chunks through the layer slot", async () => {
    const { source, stats } = asyncSource(file());
    const m = await DecoderModel.load(config, source, { build: "simd", threads: 1, residentLayers: false, residentEmbeddings: false });
    expect(m.streamsEmbeddings).toBe(true);
    const resident = await DecoderModel.load(config, file(), { build: "simd", threads: 1 });
    const all = (await m.forwardAsync([ref.input_ids])).logits;
    const d = maxAbsDiff(all, ref.logits.flat());
    console.log(
      `embedding + lm_head streamed: logits max|Δ| vs transformers ${d.max.toExponential(2)}, vs resident ${maxAbsDiff(all, resident.forward([ref.input_ids]).logits).max}`,
    );
    expect(d.max).toBeLessThanOrEqual(1e-4);
    expect(maxAbsDiff(all, resident.forward([ref.input_ids]).logits).max).toBe(0);
    const before = stats.reads;
    const g = await generate(m, undefined, ref.input_ids, { maxNewTokens: 32, ignoreEos: true });
    expect(g.new_tokens).toEqual(ref.generation.new_tokens);
    console.log(`  ${(stats.reads - before) / 32} reads per token (layers, lm_head chunks, embedding rows)`);
    const pb = ref.padded_batch;
    expect(await greedyBatch(m, pb.input_ids, pb.attention_mask, pb.generation.new_tokens[0].length)).toEqual(pb.generation.new_tokens);
    const codec = { encode: () => [], decode: (ids: number[]) => ids.join(" ") };
    const a = await inspectPrompt(m, codec, ref.input_ids);
    const b = await inspectPrompt(resident, codec, ref.input_ids);
    expect(a).toEqual(b); // the lens reads the lm_head after every layer: then the layer slot is refilled
  });

  it("two threads: bit-identical to one (the lm_head chunks split by rows like any linear)", async () => {
    const load = (threads: number) =>
      DecoderModel.load(config, asyncSource(file()).source, { build: "simd", threads, residentLayers: false, residentEmbeddings: false });
    const [one, two] = [await load(1), await load(2)];
    try {
      expect(two.threads).toBe(2);
      const a = (await one.forwardAsync([ref.input_ids])).logits;
      const b = (await two.forwardAsync([ref.input_ids])).logits;
      expect(maxAbsDiff(a, b).max).toBe(0);
      expect((await generate(two, undefined, ref.input_ids, { maxNewTokens: 8, ignoreEos: true })).new_tokens).toEqual(
        ref.generation.new_tokens.slice(0, 8),
      );
    } finally {
      two.dispose();
    }
  });

  it("the synchronous API is a clear error; the model is unharmed", async () => {
    const { source } = asyncSource(file());
    const m = await DecoderModel.load(config, source, { build: "simd", threads: 1, residentLayers: false, residentEmbeddings: false });
    const used = m.arena.used;
    expect(() => m.forward([ref.input_ids])).toThrow(/streams its embeddings.*forwardAsync/);
    const s = m.begin([ref.input_ids]);
    try {
      expect(() => m.embed(s)).toThrow(/await prepareEmbed\(step\) before embed\(step\)/);
      await m.prepareEmbed(s);
      m.embed(s);
      for (let i = 0; i < config.num_hidden_layers; i++) {
        await m.prepareLayer(i);
        m.layer(i, s);
      }
      expect(() => m.logits(s, [0])).toThrow(/use logitsAsync/);
      const last = await m.logitsAsync(s, [ref.input_ids.length - 1]);
      expect(maxAbsDiff(last, ref.logits.at(-1)).max).toBeLessThanOrEqual(1e-4);
    } finally {
      s.end();
    }
    expect(m.arena.used).toBe(used);
    await expect(DecoderModel.load(config, file(), { residentLayers: false, residentEmbeddings: false })).rejects.toThrow(
      /needs residentLayers false and an AsyncTensorSource/,
    );
    await expect(DecoderModel.load(config, source, { residentEmbeddings: false })).rejects.toThrow(/needs residentLayers false/);
  });

  it("a failed lm_head read is the reader's error; the next call works", async () => {
    const { source, stats } = asyncSource(file());
    const m = await DecoderModel.load(config, source, { build: "simd", threads: 1, residentLayers: false, residentEmbeddings: false });
    const used = m.arena.used;
    stats.failOn = "model.decoder.embed_tokens.weight";
    await expect(generate(m, undefined, ref.input_ids, { maxNewTokens: 2 })).rejects.toThrow(/embed_tokens\.weight.*connection reset/);
    expect(m.arena.used).toBe(used);
    stats.failOn = null;
    expect((await generate(m, undefined, ref.input_ids, { maxNewTokens: 8, ignoreEos: true })).new_tokens).toEqual(
      ref.generation.new_tokens.slice(0, 8),
    );
  });
});

describe("an int8 token embedding (embedDType int8)", () => {
  it("fixture: accuracy printed; saved and reloaded (streamed, async) bit-identical", async () => {
    const m = await DecoderModel.load(config, file(), { dtype: "int8", int8Group: 16, embedDType: "int8", build: "simd", threads: 1 });
    expect(m.weights.embedTokens.dtype).toBe("int8");
    const logits = m.forward([ref.input_ids]).logits;
    const d = maxAbsDiff(logits, ref.logits.flat());
    const g = await generate(m, undefined, ref.input_ids, { maxNewTokens: 32, ignoreEos: true });
    let agree = 0;
    while (agree < 32 && g.new_tokens[agree] === ref.generation.new_tokens[agree]) agree++;
    console.log(
      `int8 layers + int8 embedding, group 16: logits max|Δ| vs transformers ${d.max.toExponential(2)}, greedy agrees for ${agree}/32`,
    );
    expect(d.max).toBeLessThan(0.5);

    const { tensors, metadata } = modelTensors(m);
    expect(tensors.find((t) => t.name === "model.decoder.embed_tokens.weight")!.dtype).toBe("I8");
    const saved = openSafetensors(writeSafetensors(tensors, metadata));
    const { source } = asyncSource(saved);
    const back = await DecoderModel.load(config, source, { build: "simd", threads: 1, residentLayers: false });
    expect(back.dtype).toBe("int8");
    expect(back.weights.embedTokens.dtype).toBe("int8");
    expect(maxAbsDiff((await back.forwardAsync([ref.input_ids])).logits, logits).max).toBe(0);
    await expect(DecoderModel.load(config, saved, { embedDType: "f16" })).rejects.toThrow(
      /token embedding is int8-quantized; load it with embedDType int8/,
    );
  });

  it("OPT-125M shape: top-1 agreement with f32 printed and bounded", async () => {
    const sc = syntheticConfig("opt-125m");
    const ids = [2, 31414, 232, 328, 20, 5, 2441, 9, 5, 232, 4, 1437, 50118, 133, 2193, 9];
    const f32 = (await DecoderModel.load(sc, new SyntheticSource(sc, 3), { build: "simd", threads: 1 })).forward([ids]).logits;
    const q = (
      await DecoderModel.load(sc, new SyntheticSource(sc, 3), { dtype: "int8", embedDType: "int8", build: "simd", threads: 1 })
    ).forward([ids]).logits;
    const V = sc.vocab_size;
    let top1 = 0;
    for (let t = 0; t < ids.length; t++) {
      const am = (x: Float32Array) => {
        let b = t * V;
        for (let i = t * V; i < (t + 1) * V; i++) if (x[i] > x[b]) b = i;
        return b;
      };
      if (am(f32) === am(q)) top1++;
    }
    const d = maxAbsDiff(q, f32);
    console.log(
      `synthetic OPT-125M, int8 layers + int8 embedding: logits max|Δ| vs f32 ${d.max.toExponential(2)}, top-1 ${top1}/${ids.length}`,
    );
    expect(d.max).toBeLessThan(0.2);
    expect(top1).toBeGreaterThanOrEqual(ids.length - 2);
  }, 60_000);
});
