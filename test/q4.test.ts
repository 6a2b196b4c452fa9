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
