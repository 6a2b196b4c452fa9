// Two threads must give one thread's numbers bit for bit — in a decode loop where every kernel that
// uses per-thread scratch really runs split: linears big enough to cross PARALLEL_MIN_MACS at one
// token (K·N ≥ 2^16, so the f16 / int8 kernels expand rows into their thread's scratch) and
// q4's integer dot products, attention without collected probabilities (its scores go to each thread's scratch row). A scratch
// shared between threads (a wrong stride) makes the threads overwrite each other's rows and fails
// this test; so does a kernel whose split range misses or repeats rows. With an f16 KV cache
// (kvDtype "f16") attentionF16 is split by heads the same way.
import { describe, expect, it } from "vitest";
import { DecoderModel } from "../src/models/decoder.js";
import { parseModelConfig, type ModelConfig } from "../src/models/families/index.js";
import { SyntheticSource } from "../src/models/synthetic.js";
import { generate } from "../src/generate/index.js";
import type { WeightDType } from "../src/models/weights.js";
import type { KVDType } from "../src/models/decoder.js";

const CONFIGS: Record<string, ModelConfig> = {
  opt: parseModelConfig({
    model_type: "opt",
    vocab_size: 1000,
    hidden_size: 256,
    num_hidden_layers: 2,
    num_attention_heads: 8,
    ffn_dim: 1024,
    max_position_embeddings: 256,
    word_embed_proj_dim: 256,
  }),
  llama: parseModelConfig({
    model_type: "llama",
    vocab_size: 1000,
    hidden_size: 256,
    intermediate_size: 768,
    num_hidden_layers: 2,
    num_attention_heads: 8,
    num_key_value_heads: 2,
    max_position_embeddings: 256,
    tie_word_embeddings: true,
  }),
  gpt2: parseModelConfig({ model_type: "gpt2", vocab_size: 1000, n_embd: 256, n_layer: 2, n_head: 8, n_positions: 256 }),
};

// Long enough that the heads' attention rows (past + 1 scores each) overlap in time across threads.
const PROMPT = Array.from({ length: 160 }, (_, i) => (i * 61 + 5) % 1000);

describe("two threads equal one, bit for bit, in a decode loop that splits every kernel", () => {
  for (const [name, config] of Object.entries(CONFIGS)) {
    const cases: [WeightDType, KVDType][] = [
      ["f32", "f32"],
      ["f16", "f32"],
      ["int8", "f32"],
      ["q4", "f32"],
      ["f32", "f16"],
      ["int8", "f16"],
    ];
    for (const [dtype, kvDtype] of cases) {
      it(`${name} ${dtype}${kvDtype === "f16" ? ", f16 KV cache" : ""}`, async () => {
        const load = (threads: number) => DecoderModel.load(config, new SyntheticSource(config, 1), { threads, dtype });
        const one = await load(1);
        const two = await load(2);
        try {
          expect(two.threads).toBe(2);
          // Prefill, then decode steps of one token: logits of every step compared exactly.
          const steps = (m: DecoderModel) => {
            const cache = m.createCache(1, 200, { kvDtype });
            const out: Float32Array[] = [m.forward([PROMPT], { cache, logits: "last" }).logits];
            for (let i = 0; i < 8; i++) out.push(m.forward([[(i * 37 + 11) % 1000]], { cache, logits: "last" }).logits);
            cache.release();
            return out;
          };
          const a = steps(one);
          const b = steps(two);
          for (let i = 0; i < a.length; i++) expect(b[i], `step ${i}`).toEqual(a[i]);
          // A batch of 3 decoded together (the GEMM paths) too.
          const batch = [PROMPT.slice(0, 12), PROMPT.slice(12, 24), PROMPT.slice(24, 36)];
          expect(two.forward(batch, { kvDtype }).logits).toEqual(one.forward(batch, { kvDtype }).logits);
          const g1 = await generate(one, undefined, PROMPT, { maxNewTokens: 8, ignoreEos: true, kvDtype });
          const g2 = await generate(two, undefined, PROMPT, { maxNewTokens: 8, ignoreEos: true, kvDtype });
          expect(g2.new_tokens).toEqual(g1.new_tokens);
        } finally {
          two.dispose();
        }
      });
    }
  }
});
