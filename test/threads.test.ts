// Two threads must give one thread's numbers bit for bit — in a decode loop where every kernel that
// uses per-thread scratch really runs split: linears big enough to cross PARALLEL_MIN_MACS at one
// token (K·N ≥ 2^16, so the f16 / int8 kernels expand rows into their thread's scratch) and
// q4's integer dot products, attention without collected probabilities (its scores go to each thread's scratch row). A scratch
// shared between threads (a wrong stride) makes the threads overwrite each other's rows and fails
// this test; so does a kernel whose split range misses or repeats rows. With an f16 KV cache
// (kvDtype "f16") attentionF16 is split by heads the same way.
//
// A decoded token costs 5 parallel regions a layer — q, k and v in one; attention (every batch
// row's heads); o; up, or gate and up, in one; down — and one for the lm_head. The count is
// asserted, so that a change which splits a fused region again is caught.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DecoderModel } from "../src/models/decoder.js";
import { parseModelConfig, type ModelConfig } from "../src/models/families/index.js";
import { SyntheticSource } from "../src/models/synthetic.js";
import { openSafetensors } from "../src/formats/safetensors.js";
import { generate } from "../src/generate/index.js";
import type { WeightDType } from "../src/models/weights.js";
import type { KVDType } from "../src/models/decoder.js";

/** Parallel regions of one decoded token (any batch): 5 per layer and the lm_head's. */
const regionsPerToken = (L: number) => 5 * L + 1;

/** Regions the model's pool ran during f() (0 without a pool). */
function regionsOf(m: DecoderModel, f: () => void): number {
  const before = m.pool?.regions ?? 0;
  f();
  return (m.pool?.regions ?? 0) - before;
}

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
          expect(regionsOf(two, () => steps(two)) - regionsOf(two, () => two.forward([PROMPT], { logits: "last" }))).toBe(
            8 * regionsPerToken(two.dims.L),
          );
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

// The fixtures of every family (transformers' tiny checkpoints: hidden size 64, LLaMA with GQA and
// an MLP width of 176, which q4 holds in int8) are far below PARALLEL_MIN_MACS: parallelMinMacs 0
// puts every linear on the pool and minPiece 1 cuts it into one-unit pieces, so every decode step
// runs each kernel split.
const FIXTURES = ["opt-tiny", "gpt2-tiny", "llama-tiny"].map((name) => {
  const dir = new URL(`./fixtures/${name}/`, import.meta.url);
  const bytes = new Uint8Array(readFileSync(new URL("model.safetensors", dir)));
  const config = parseModelConfig(readFileSync(new URL("config.json", dir), "utf8"), `${name}/config.json`);
  const ref = JSON.parse(readFileSync(new URL("reference.json", dir), "utf8")) as { input_ids: number[] };
  return { name, config, open: () => openSafetensors(bytes, `${name}/model.safetensors`), prompt: ref.input_ids };
});

describe("every family's fixture, every kernel split: int8 and q4 decode loops on 2 threads equal 1 thread", () => {
  for (const f of FIXTURES) {
    for (const dtype of ["int8", "q4"] as const) {
      it(`${f.name} ${dtype}: 16 decode steps and a continuous batch of 3, in 5 regions a layer`, async () => {
        const load = async (threads: number) => {
          const m = await DecoderModel.load(f.config, f.open(), { threads, dtype, label: f.name });
          m.parallelMinMacs = 0;
          if (m.pool) m.pool.minPiece = 1;
          return m;
        };
        const one = await load(1);
        const two = await load(2);
        try {
          expect(two.threads).toBe(2);
          const { L } = two.dims;
          // Greedy decoding, each step's logits compared exactly; the same tokens fed to both.
          const decode = (m: DecoderModel, check?: (step: number, logits: Float32Array) => void) => {
            const cache = m.createCache(1, 64);
            let logits = m.forward([f.prompt], { cache, logits: "last" }).logits;
            const seen: Float32Array[] = [logits];
            for (let i = 0; i < 16; i++) {
              const next = logits.indexOf(Math.max(...logits));
              const regions = regionsOf(m, () => (logits = m.forward([[next]], { cache, logits: "last" }).logits));
              if (m.pool) expect(regions, `regions of decode step ${i}`).toBe(regionsPerToken(L));
              seen.push(logits);
              check?.(i, logits);
            }
            cache.release();
            return seen;
          };
          const a = decode(one);
          const b = decode(two);
          for (let i = 0; i < a.length; i++) expect(b[i], `step ${i}`).toEqual(a[i]);
          // Three sequences at different positions decoded in one step (the engine's batching):
          // still one attention region for all rows.
          const batch = (m: DecoderModel) => {
            const caches = [3, 7, 12].map((n) => {
              const c = m.createCache(1, 32);
              m.forward([f.prompt.slice(0, n)], { cache: c, logits: "none" });
              return c;
            });
            let out = new Float32Array(0);
            const regions = regionsOf(m, () => (out = m.forward([[5], [6], [7]], { caches, logits: "last" }).logits));
            for (const c of caches.reverse()) c.release();
            return { out, regions };
          };
          const b1 = batch(one);
          const b2 = batch(two);
          expect(b2.regions).toBe(regionsPerToken(L));
          expect(b2.out).toEqual(b1.out);
        } finally {
          two.dispose();
        }
      });
    }
  }
});

describe("the pool after a kernel traps", () => {
  it("the region throws, and the next regions run and give 1 thread's tokens", async () => {
    const config = CONFIGS.opt;
    const one = await DecoderModel.load(config, new SyntheticSource(config, 1), { threads: 1, dtype: "int8" });
    const two = await DecoderModel.load(config, new SyntheticSource(config, 1), { threads: 2, dtype: "int8" });
    try {
      // linear writing past the end of memory: every piece traps, on either thread.
      const past = two.wasm.memory.buffer.byteLength + 4096;
      expect(() => two.pool!.split("linear", [past, 0, 0, 0, 1, 16, 256, 0, 256])).toThrow();
      expect(two.threads).toBe(2);
      const g1 = await generate(one, undefined, PROMPT, { maxNewTokens: 8, ignoreEos: true });
      const g2 = await generate(two, undefined, PROMPT, { maxNewTokens: 8, ignoreEos: true });
      expect(g2.new_tokens).toEqual(g1.new_tokens);
    } finally {
      two.dispose();
    }
  });
});
