// q4 weights (4-bit, a bf16 scale and minimum per block of 32 inputs): accuracy against f32 on
// transformers' fixtures (reported, and bounded), every block's scale and minimum against the
// block's own values, and `quantize --dtype q4`'s file reloading to the same numbers.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openSafetensors, writeSafetensors } from "../src/formats/safetensors.js";
import { bf16ToF32 } from "../src/formats/dtype.js";
import { parseModelConfig } from "../src/models/families/index.js";
import { DecoderModel, type LoadOptions } from "../src/models/decoder.js";
import { modelTensors } from "../src/models/save.js";
import { SyntheticSource } from "../src/models/synthetic.js";
import { generate } from "../src/generate/index.js";
import { asyncSource } from "./helpers.js";

const dir = (name: string) => fileURLToPath(new URL(`./fixtures/${name}/`, import.meta.url));
const open = (name: string) => openSafetensors(new Uint8Array(readFileSync(join(dir(name), "model.safetensors"))), name);
const config = (name: string) => parseModelConfig(readFileSync(join(dir(name), "config.json"), "utf8"));
const load = (name: string, o: LoadOptions) => DecoderModel.load(config(name), open(name), { threads: 1, ...o });

describe("q4 on transformers' fixtures", () => {
  for (const name of ["opt-tiny", "llama-tiny", "gpt2-tiny"]) {
    it(`${name}: logits close to f32's (relative RMS reported and bounded), greedy agreement reported`, async () => {
      const ref = JSON.parse(readFileSync(join(dir(name), "reference.json"), "utf8"));
      const f32 = await load(name, { dtype: "f32" });
      const q4 = await load(name, { dtype: "q4" });
      expect(q4.dtype).toBe("q4");
      const a = f32.forward([ref.input_ids]).logits;
      const b = q4.forward([ref.input_ids]).logits;
      let se = 0,
        ss = 0,
        maxAbs = 0;
      for (let i = 0; i < a.length; i++) {
        se += (a[i] - b[i]) ** 2;
        ss += a[i] ** 2;
        maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
      }
      const rel = Math.sqrt(se / ss);
      const V = a.length / ref.input_ids.length;
      let top1 = 0;
      for (let t = 0; t < ref.input_ids.length; t++) {
        const row = (x: Float32Array) => x.subarray(t * V, (t + 1) * V);
        const am = (x: Float32Array) => x.indexOf(Math.max(...x));
        if (am(row(a)) === am(row(b))) top1++;
      }
      const g = (await generate(q4, undefined, ref.input_ids, { maxNewTokens: 32, ignoreEos: true })).new_tokens;
      const agree = g.filter((t: number, i: number) => t === ref.generation.new_tokens[i]).length;
      console.log(
        `${name} q4 vs f32: logits relative RMS ${(100 * rel).toFixed(1)}%, max|Δ| ${maxAbs.toFixed(3)}, ` +
          `top-1 ${top1}/${ref.input_ids.length} positions, greedy ${agree}/32 tokens equal to transformers'`,
      );
      // These fixtures are scaled so that a wrong kernel moves the top tokens; 4-bit weights with
      // ~8% RMS error per matrix compound over the layers. A broken q4 path gives ~100%.
      expect(rel).toBeLessThan(0.35);
      expect(top1).toBeGreaterThanOrEqual(ref.input_ids.length / 2);
    });
  }
});

describe("q4 prefill (gemmQ4Tiles, T > 1) against q4 decode (matvecQ4, T = 1) on the same activations", () => {
  // Both quantize each row's input per block of 32 the same way, sum the same integers and apply
  // each block's scales in the same order: measured bit-identical on opt-tiny and gpt2-tiny.
  // llama-tiny's MLP (width 176, not whole blocks) is int8, whose T > 1 path (linearI8, f32
  // activations) and T = 1 path (matvecI8A16, int16 activations) differ by design: measured
  // 0.12 at max|logit| 15.5. A wrong scale, block or token in gemmQ4Tiles moves logits by ~1-10.
  const bounds: Record<string, number> = { "opt-tiny": 1e-4, "gpt2-tiny": 1e-4, "llama-tiny": 2e-2 };
  for (const name of ["opt-tiny", "llama-tiny", "gpt2-tiny"]) {
    it(`${name}: every position's logits within ${bounds[name]}·max|logit|`, async () => {
      const ref = JSON.parse(readFileSync(join(dir(name), "reference.json"), "utf8"));
      const ids: number[] = ref.input_ids;
      const q4 = await load(name, { dtype: "q4" });
      const prefill = q4.forward([ids]).logits;
      const V = prefill.length / ids.length;
      const cache = q4.createCache(1, ids.length);
      let worst = 0,
        scale = 0;
      for (let t = 0; t < ids.length; t++) {
        const step = q4.forward([[ids[t]]], { cache, logits: "last" }).logits;
        for (let v = 0; v < V; v++) {
          worst = Math.max(worst, Math.abs(step[v] - prefill[t * V + v]));
          scale = Math.max(scale, Math.abs(step[v]));
        }
      }
      cache.release();
      console.log(`${name} q4 prefill vs decode: max|Δ| ${worst.toExponential(2)}, max|logit| ${scale.toFixed(2)}`);
      expect(worst).toBeLessThanOrEqual(bounds[name] * scale);
    });
  }
});

describe("q4 blocks", () => {
  it("each block's minimum is at most its smallest weight, minimum + 15·scale at least its largest, and every weight within half a step", async () => {
    const cfg = parseModelConfig({
      model_type: "llama",
      vocab_size: 300,
      hidden_size: 128,
      intermediate_size: 256,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      max_position_embeddings: 32,
    });
    const src = new SyntheticSource(cfg, 3);
    const m = await DecoderModel.load(cfg, src, { threads: 1, dtype: "q4" });
    for (const [field, name, N, K] of [
      ["q", "model.layers.0.self_attn.q_proj.weight", 128, 128],
      ["down", "model.layers.0.mlp.down_proj.weight", 128, 256],
    ] as const) {
      const mat = m.weights.layers[0][field];
      expect(mat.dtype).toBe("q4");
      const w = new Float32Array(N * K);
      src.readF32(name, w);
      const q = m.arena.u8(mat.w, (N * K) / 2);
      const sb = new Uint16Array(m.arena.u8(mat.s, N * (K / 32) * 4).slice().buffer);
      const ss = Float32Array.from(sb, (h) => bf16ToF32(h)); // per row: K/32 scales, then K/32 minimums
      let worst = 0;
      for (let n = 0; n < N; n++) {
        for (let blk = 0; blk < K / 32; blk++) {
          const d = ss[n * 2 * (K / 32) + blk];
          const mn = ss[n * 2 * (K / 32) + K / 32 + blk];
          const vals = w.subarray(n * K + blk * 32, n * K + blk * 32 + 32);
          const lo = Math.min(...vals),
            hi = Math.max(...vals);
          expect(d).toBeGreaterThanOrEqual(0);
          expect(mn).toBeLessThanOrEqual(lo + 1e-2 * Math.abs(lo)); // bf16 keeps 8 bits: the minimum is rounded down or close
          expect(mn + 15 * d).toBeGreaterThanOrEqual(hi - 1e-2 * Math.abs(hi));
          expect(d).toBeLessThanOrEqual(((hi - lo) / 15) * 1.02 + 1e-9); // no wider than the block needs
          for (let j = 0; j < 32; j++) {
            const byte = q[(n * K) / 2 + blk * 16 + (j & 15)];
            const u = j < 16 ? byte & 15 : byte >> 4;
            worst = Math.max(worst, Math.abs(mn + d * u - vals[j]) / (d || 1));
          }
        }
      }
      // Half a step, plus the bf16 rounding of the scale and minimum.
      expect(worst).toBeLessThan(0.6);
    }
  });
});

describe("quantize --dtype q4's file", () => {
  for (const name of ["opt-tiny", "llama-tiny"]) {
    it(`${name}: saved as U8 + BF16 scales, reloads as q4 with the same logits`, async () => {
      const q4 = await load(name, { dtype: "q4" });
      const { tensors, metadata } = modelTensors(q4);
      expect(tensors.some((t) => t.dtype === "U8")).toBe(true);
      expect(metadata.wasm_lm_dtype).toBe("q4");
      const file = openSafetensors(writeSafetensors(tensors, metadata), "q4.safetensors");
      const again = await DecoderModel.load(config(name), file, { threads: 1 });
      expect(again.dtype).toBe("q4");
      const ids = [1, 2, 3, 4, 5, 6, 7];
      expect(again.forward([ids]).logits).toEqual(q4.forward([ids]).logits);
      await expect(DecoderModel.load(config(name), file, { threads: 1, dtype: "int8", label: "x" })).rejects.toThrow(
        "x: the checkpoint is q4-quantized; load it with dtype q4",
      );
    });
  }
});

describe("a q4 token embedding (embedDType q4)", () => {
  for (const name of ["opt-tiny", "llama-tiny", "gpt2-tiny"]) {
    it(`${name}: rows gathered as quantizeQ4 stored them, lm_head on the q4 kernels; saved, reloaded resident and streamed bit-identical`, async () => {
      const ref = JSON.parse(readFileSync(join(dir(name), "reference.json"), "utf8"));
      const cfg = config(name);
      const base = await load(name, { dtype: "q4" });
      const m = await load(name, { dtype: "q4", embedDType: "q4" });
      const { V, E } = m.dims;
      const table = m.weights.embedTokens;
      expect(table.dtype).toBe(E % 32 === 0 ? "q4" : "int8");
      expect(m.weights.lmHead.dtype).toBe(table.dtype);

      // The gathered rows are d·u + m of the stored nibbles, scales and minimums.
      const ids = ref.input_ids as number[];
      const emb = m.forward([ids], { outputHiddenStates: true }).hiddenStates!.embeddings;
      if (table.dtype === "q4" && m.dims.positions !== "learned" && !m.dims.project) {
        const q = m.arena.u8(table.w, (V * E) / 2);
        const s = new Uint16Array(m.arena.u8(table.s, V * (E / 32) * 4).slice().buffer);
        const nb = E / 32;
        let worst = 0;
        ids.forEach((id, t) => {
          for (let k = 0; k < E; k++) {
            const blk = k >> 5,
              j = k & 31;
            const byte = q[(id * E) / 2 + blk * 16 + (j & 15)];
            const u = j < 16 ? byte & 15 : byte >> 4;
            const want = bf16ToF32(s[id * 2 * nb + blk]) * u + bf16ToF32(s[id * 2 * nb + nb + blk]);
            worst = Math.max(worst, Math.abs(emb[t * E + k] - want));
          }
        });
        expect(worst).toBeLessThan(1e-6);
      }

      // Accuracy against the same model with an f16 embedding: reported and bounded.
      const a = base.forward([ids]).logits;
      const b = m.forward([ids]).logits;
      let se = 0,
        ss = 0;
      for (let i = 0; i < a.length; i++) {
        se += (a[i] - b[i]) ** 2;
        ss += a[i] ** 2;
      }
      const rel = Math.sqrt(se / ss);
      console.log(`${name} q4 layers, q4 vs f16 embedding: logits relative RMS ${(100 * rel).toFixed(1)}%`);
      // Measured 9–24 %: the LM head's 4-bit error lands on the logits directly. A wrong gather or
      // head (rows, nibble order, scale and minimum swapped) gives ≥ 100 %.
      expect(rel).toBeLessThan(0.35);
      expect(rel).toBeGreaterThan(0);

      // quantize --dtype q4 --embed-dtype q4: U8 + BF16 _scale for the embedding too. (GPT-2's Conv1D
      // layers are repacked at load, so saving refuses it: see the test below.)
      const sources = [open(name)];
      if (name !== "gpt2-tiny") {
        const { tensors, metadata } = modelTensors(m);
        const emb = tensors.find((t) => /embed_tokens\.weight$/.test(t.name))!;
        expect(emb.dtype).toBe(table.dtype === "q4" ? "U8" : "I8");
        const saved = openSafetensors(writeSafetensors(tensors, metadata), "q4e.safetensors");
        const again = await DecoderModel.load(cfg, saved, { threads: 1 });
        expect(again.weights.embedTokens.dtype).toBe(table.dtype);
        expect(again.forward([ids]).logits).toEqual(b);
        await expect(DecoderModel.load(cfg, saved, { threads: 1, embedDType: "f16", label: "x" })).rejects.toThrow(
          `x: the checkpoint's token embedding is ${table.dtype}-quantized; load it with embedDType ${table.dtype}`,
        );
        sources.push(saved);
      }
      // Streamed: layers and the embedding rows / lm_head chunks read from an async source, both
      // quantized on the fly from the float file and as they are from the saved q4 file.
      for (const src of sources) {
        const { source } = asyncSource(src);
        const st = await DecoderModel.load(cfg, source, {
          threads: 1,
          dtype: "q4",
          embedDType: "q4",
          residentLayers: false,
          residentEmbeddings: false,
        });
        expect(st.streamsLayers).toBe(true);
        expect((await st.forwardAsync([ids])).logits).toEqual(b);
      }
    });
  }

  it("gpt2-tiny: saving is refused, not a GPT-2 file with the wrong layout", async () => {
    const m = await load("gpt2-tiny", { dtype: "q4", embedDType: "q4" });
    expect(() => modelTensors(m)).toThrow(/saving a gpt2 model is not supported yet/);
  });
});

describe("top-1 agreement with f32, asserted (teacher-forced over the prompt and transformers' 32 greedy tokens)", () => {
  // Measured on both builds: opt-tiny int8 43/44, q4 39/44; llama-tiny int8 42, q4 22; gpt2-tiny
  // int8 43, q4 25. Greedy agreement (test/families.test.ts) stops counting at the first flip; this
  // counts every position, so one near-tie does not hide the rest. A broken int8 or q4 path agrees
  // at a few positions at most (V = 512 or more).
  const floor: Record<string, { int8: number; q4: number }> = {
    "opt-tiny": { int8: 42, q4: 37 },
    "llama-tiny": { int8: 41, q4: 20 },
    "gpt2-tiny": { int8: 42, q4: 23 },
  };
  for (const name of Object.keys(floor)) {
    it(name, async () => {
      const ref = JSON.parse(readFileSync(join(dir(name), "reference.json"), "utf8"));
      const seq: number[] = [...ref.input_ids, ...ref.generation.new_tokens];
      const f32 = (await load(name, { dtype: "f32" })).forward([seq]).logits;
      const V = f32.length / seq.length;
      const argmax = (x: Float32Array, t: number) => {
        let b = t * V;
        for (let i = t * V; i < (t + 1) * V; i++) if (x[i] > x[b]) b = i;
        return b - t * V;
      };
      for (const dtype of ["int8", "q4"] as const) {
        const got = (await load(name, { dtype })).forward([seq]).logits;
        let agree = 0;
        for (let t = 0; t < seq.length; t++) if (argmax(got, t) === argmax(f32, t)) agree++;
        console.log(`${name} ${dtype}: top-1 equal to f32's at ${agree}/${seq.length} positions`);
        expect(agree).toBeGreaterThanOrEqual(floor[name][dtype]);
      }
    });
  }
});
