// The decoder on every family beyond OPT: transformers' fixtures (LLaMA with GQA and RoPE, GPT-2
// with Conv1D weights) in every build — logits, hidden states, 32 greedy tokens, the left-padded
// batch — then f16 / int8, two threads, streamed layers and embeddings; and configurations beyond
// the fixtures (Qwen2's biases, MQA, linear RoPE scaling, tied heads, GPT-2's per-layer scaling)
// against the float64 reference in ./family-reference.ts.
import { beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openSafetensors } from "../src/formats/safetensors.js";
import { parseModelConfig, type ModelConfig } from "../src/models/families/index.js";
import { DecoderModel, type LoadOptions } from "../src/models/decoder.js";
import { generate, greedyBatch } from "../src/generate/index.js";
import { inspectPrompt } from "../src/inspect.js";
import { asyncSource, BUILDS, closeness, maxAbsDiff } from "./helpers.js";
import { checkpointToSafetensors, getterFromSource, randomCheckpoint, referenceForward, type HfConfig } from "./family-reference.js";

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}/`, import.meta.url));
const LOGIT_TOL = 1e-4;

interface Fixture {
  name: string;
  config: ModelConfig;
  file: () => ReturnType<typeof openSafetensors>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  ref: any;
}

const FIXTURES: Fixture[] = ["llama-tiny", "gpt2-tiny"].map((name) => {
  const dir = fixture(name);
  const bytes = new Uint8Array(readFileSync(join(dir, "model.safetensors")));
  return {
    name,
    config: parseModelConfig(readFileSync(join(dir, "config.json"), "utf8"), `${name}/config.json`),
    file: () => openSafetensors(bytes, `${name}/model.safetensors`),
    ref: JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")),
  };
});

const load = (f: Fixture, o: LoadOptions = {}) => DecoderModel.load(f.config, f.file(), { threads: 1, label: f.name, ...o });

/** Greedy tokens of the prompt with the KV cache (EOS disabled, as the fixtures' generation). */
async function greedy(model: DecoderModel, ids: number[], n = 32): Promise<number[]> {
  return (await generate(model, undefined, ids, { maxNewTokens: n, ignoreEos: true })).new_tokens;
}

for (const f of FIXTURES) {
  for (const build of BUILDS) {
    describe(`${f.name}, ${build} build`, () => {
      let model: DecoderModel;
      beforeAll(async () => {
        model = await load(f, { build });
      });

      it("logits and every layer's hidden states match transformers", () => {
        const r = model.forward([f.ref.input_ids], { outputHiddenStates: true });
        const logits = maxAbsDiff(r.logits, f.ref.logits.flat());
        const hs = r.hiddenStates!;
        const emb = maxAbsDiff(hs.embeddings, f.ref.hidden_states.embeddings.flat());
        const layers = hs.layers.map((h, i) => maxAbsDiff(h, f.ref.hidden_states.layers[i].flat()).max);
        // GPT-2's ln_f weights are ~125 here and its output reaches ~425: f32 rounding is relative to
        // the largest value, not to each element.
        const finRef = f.ref.hidden_states.final.flat() as number[];
        const fin = closeness(hs.final, finRef, 1e-4 + 1e-5 * Math.max(...finRef.map(Math.abs)), 0);
        console.log(
          `${f.name} ${build}: logits max|Δ| ${logits.max.toExponential(2)}, embeddings ${emb.max.toExponential(2)}, ` +
            `layers ${layers.map((v) => v.toExponential(2)).join(" ")}, final ${fin.maxAbs.toExponential(2)}`,
        );
        expect(logits.max).toBeLessThanOrEqual(LOGIT_TOL);
        expect(emb.max).toBeLessThanOrEqual(1e-5);
        for (const v of layers) expect(v).toBeLessThanOrEqual(LOGIT_TOL);
        expect(fin.ratio, fin.message).toBeLessThanOrEqual(1);
      });

      it("greedy generation with the KV cache gives transformers' 32 tokens", async () => {
        expect(await greedy(model, f.ref.input_ids)).toEqual(f.ref.generation.new_tokens);
      });

      it("a left-padded batch: valid positions' logits and the batched greedy tokens", async () => {
        const pb = f.ref.padded_batch;
        const r = model.forward(pb.input_ids, { attentionMask: pb.attention_mask });
        const [B, T, V] = r.logitsShape;
        expect(B).toBe(2);
        let worst = 0;
        pb.rows.forEach((row: { first_valid_position: number; logits: number[][] }, b: number) => {
          row.logits.forEach((ref: number[], j: number) => {
            const t = row.first_valid_position + j;
            worst = Math.max(worst, maxAbsDiff(r.logits.subarray((b * T + t) * V, (b * T + t + 1) * V), ref).max);
          });
        });
        console.log(`${f.name} ${build}: padded batch valid logits max|Δ| ${worst.toExponential(2)}`);
        expect(worst).toBeLessThanOrEqual(LOGIT_TOL);
        const n = pb.generation.new_tokens[0].length;
        expect(await greedyBatch(model, pb.input_ids, pb.attention_mask, n)).toEqual(pb.generation.new_tokens);
      });
    });
  }

  describe(`${f.name}: dtypes, threads, streaming`, () => {
    it("f16 and int8 weights stay close to transformers (reported) and agree on most greedy tokens", async () => {
      for (const dtype of ["f16", "int8"] as const) {
        const m = await load(f, { dtype });
        const r = m.forward([f.ref.input_ids]);
        const d = maxAbsDiff(r.logits, f.ref.logits.flat()).max;
        const toks = await greedy(m, f.ref.input_ids);
        const agree = toks.filter((t, i) => t === f.ref.generation.new_tokens[i]).length;
        console.log(`${f.name} ${dtype}: logits max|Δ| ${d.toExponential(2)}, greedy ${agree}/32 equal to transformers'`);
        // f16 weights round each weight by ≤ 2^-11 relative; int8 by ≤ 1/254 of a group's maximum.
        expect(d).toBeLessThan(dtype === "f16" ? 0.05 : 0.5);
        // The first token follows the prompt's logits, whose top gap is large on these fixtures.
        expect(toks[0]).toBe(f.ref.generation.new_tokens[0]);
      }
    });

    it("two threads give one thread's logits bit for bit, through a prefill and 8 cached decode steps", async () => {
      const one = await load(f, { threads: 1 });
      const two = await load(f, { threads: 2 });
      try {
        expect(two.threads).toBe(2);
        const a = await greedy(one, f.ref.input_ids, 8);
        const b = await greedy(two, f.ref.input_ids, 8);
        expect(b).toEqual(a);
        const seq = [...f.ref.input_ids, ...a];
        expect(two.forward([seq]).logits).toEqual(one.forward([seq]).logits);
      } finally {
        two.dispose();
      }
    });

    it("inspectPrompt: the logit lens of the last layer is the model's logits; GQA heads name their KV head", async () => {
      const m = await load(f);
      const ids: number[] = f.ref.input_ids;
      const codec = { encode: () => [], decode: (x: number[]) => x.map((id) => `<${id}>`).join("") };
      const r = await inspectPrompt(m, codec, ids, { attentions: true });
      const { H, Hkv, L, V } = m.dims;
      const last = f.ref.logits[ids.length - 1] as number[];
      const top = last.indexOf(Math.max(...last));
      expect(r.layers[L].top[0].id).toBe(top);
      expect(r.layers[L].heads!.map((h) => h.kvHead)).toEqual(Array.from({ length: H }, (_, h) => Math.floor(h / (H / Hkv))));
      const fwd = m.forward([ids], { outputAttentions: true, logits: "none" });
      for (let l = 0; l < L; l++) expect(r.layers[l + 1].attention).toEqual(fwd.attentions![l]);
      expect(V).toBe(f.ref.logits[0].length);
    });

    it("streamed layers, and weights streamed from an asynchronous source, give the resident logits exactly", async () => {
      const resident = (await load(f)).forward([f.ref.input_ids]).logits;
      const sync = await load(f, { residentLayers: false });
      expect(sync.streamsLayers).toBe(true);
      expect(sync.forward([f.ref.input_ids]).logits).toEqual(resident);
      for (const dtype of ["f32", "int8"] as const) {
        const { source } = asyncSource(f.file());
        const remote = await DecoderModel.load(f.config, source, {
          threads: 1,
          residentLayers: false,
          residentEmbeddings: false,
          dtype,
          label: f.name,
        });
        expect(remote.streamsEmbeddings).toBe(true);
        const r = await remote.forwardAsync([f.ref.input_ids]);
        if (dtype === "f32") expect(r.logits).toEqual(resident);
        const local = await load(f, { dtype });
        expect(r.logits).toEqual(local.forward([f.ref.input_ids]).logits);
        expect(await greedy(remote, f.ref.input_ids, 6)).toEqual(await greedy(local, f.ref.input_ids, 6));
      }
    });
  });
}

// ---- configurations beyond the fixtures, against the float64 reference ----

const LLAMA_BASE: HfConfig = {
  model_type: "llama",
  vocab_size: 97,
  hidden_size: 48,
  intermediate_size: 80,
  num_hidden_layers: 2,
  num_attention_heads: 6,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  hidden_act: "silu",
  bos_token_id: 1,
  eos_token_id: 2,
};
const GPT2_BASE: HfConfig = {
  model_type: "gpt2",
  vocab_size: 97,
  n_embd: 48,
  n_layer: 2,
  n_head: 4,
  n_positions: 64,
  n_inner: null,
  activation_function: "gelu_new",
  layer_norm_epsilon: 1e-5,
  bos_token_id: 0,
  eos_token_id: 0,
};

const VARIANTS: [string, HfConfig, { gpt2Prefix?: boolean }?][] = [
  [
    "Qwen2: q/k/v biases, tied head, rope_theta 1e6",
    { ...LLAMA_BASE, model_type: "qwen2", tie_word_embeddings: true, rope_theta: 1e6, use_sliding_window: false, sliding_window: 4096 },
  ],
  ["LLaMA, multi-query attention (1 KV head)", { ...LLAMA_BASE, num_key_value_heads: 1 }],
  [
    "LLaMA, no GQA (KV heads = heads), attention_bias and mlp_bias",
    { ...LLAMA_BASE, num_key_value_heads: 6, attention_bias: true, mlp_bias: true },
  ],
  ["LLaMA, rope_scaling linear factor 4", { ...LLAMA_BASE, rope_scaling: { type: "linear", factor: 4 } }],
  [
    "LLaMA, head dim 16 (odd half multiple: 8), tied",
    { ...LLAMA_BASE, hidden_size: 48, num_attention_heads: 3, num_key_value_heads: 3, tie_word_embeddings: true },
  ],
  [
    "GPT-2, scale_attn_by_inverse_layer_idx, n_inner 100, hub names (no transformer. prefix)",
    { ...GPT2_BASE, scale_attn_by_inverse_layer_idx: true, n_inner: 100 },
    { gpt2Prefix: false },
  ],
  ["GPT-2, exact gelu, scale_attn_weights false", { ...GPT2_BASE, activation_function: "gelu", scale_attn_weights: false }],
];

describe("family variants vs the float64 reference", () => {
  for (const [what, cfg, opts] of VARIANTS) {
    it(what, async () => {
      const bytes = checkpointToSafetensors(randomCheckpoint(cfg, 7, opts));
      const src = openSafetensors(bytes, "variant.safetensors");
      const model = await DecoderModel.load(parseModelConfig(cfg), src, { threads: 1 });
      const ids = [
        [3, 17, 42, 5, 96, 11, 0, 64, 23, 8],
        [1, 1, 1, 9, 33, 70, 12, 4, 55, 6],
      ];
      const mask = [ids[0].map(() => 1), [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]];
      const r = model.forward(ids, { attentionMask: mask });
      const ref = referenceForward(cfg, getterFromSource(src), ids, { attentionMask: mask });
      const V = r.logitsShape[2];
      let worst = 0;
      let scale = 0;
      for (let b = 0; b < 2; b++) {
        for (let t = 0; t < 10; t++) {
          if (!mask[b][t]) continue;
          const o = (b * 10 + t) * V;
          worst = Math.max(worst, maxAbsDiff(r.logits.subarray(o, o + V), ref.logits.subarray(o, o + V)).max);
          for (let j = 0; j < V; j++) scale = Math.max(scale, Math.abs(ref.logits[o + j]));
        }
      }
      console.log(`${what}: max|Δ| vs float64 ${worst.toExponential(2)} (logits up to ${scale.toFixed(2)})`);
      expect(scale).toBeGreaterThan(0.5); // the logits are not all ~0 (a test that can fail)
      expect(worst).toBeLessThanOrEqual(1e-4 * Math.max(1, scale));
      // Cached decoding continues the padded batch exactly like recomputing it.
      const cache = model.createCache(2, 12);
      model.forward(ids, { attentionMask: mask, cache, logits: "none" });
      const step = model.forward([[7], [8]], { cache, logits: "last" });
      const whole = model.forward(
        ids.map((row, b) => [...row, 7 + b]),
        { attentionMask: mask.map((m) => [...m, 1]), logits: "last" },
      );
      expect(maxAbsDiff(step.logits, whole.logits).max).toBeLessThanOrEqual(1e-5);
      cache.release();
    });
  }
});

describe("family configs: what cannot run is refused in one line, naming the field", () => {
  const bad: [string, HfConfig, string][] = [
    ["rope_scaling yarn", { ...LLAMA_BASE, rope_scaling: { rope_type: "yarn", factor: 4 } }, `rope_scaling type "yarn" is not supported`],
    [
      "rope_scaling llama3",
      { ...LLAMA_BASE, rope_scaling: { rope_type: "llama3", factor: 8 } },
      `rope_scaling type "llama3" is not supported`,
    ],
    ["dynamic rope", { ...LLAMA_BASE, rope_scaling: { type: "dynamic", factor: 2 } }, `rope_scaling type "dynamic" is not supported`],
    ["Qwen2 sliding window", { ...LLAMA_BASE, model_type: "qwen2", use_sliding_window: true }, "use_sliding_window true is not supported"],
    ["a head_dim of its own", { ...LLAMA_BASE, head_dim: 32 }, "head_dim 32 is not supported"],
    ["gelu gated MLP", { ...LLAMA_BASE, hidden_act: "gelu" }, "hidden_act 'gelu' is not supported"],
    [
      "KV heads not dividing heads",
      { ...LLAMA_BASE, num_key_value_heads: 4 },
      "num_attention_heads 6 is not divisible by num_key_value_heads 4",
    ],
    ["GPT-2 with cross-attention", { ...GPT2_BASE, add_cross_attention: true }, "add_cross_attention true is not supported"],
    ["GPT-2 n_embd missing", { ...GPT2_BASE, n_embd: undefined }, "missing field 'n_embd'"],
    ["an unknown family", { ...LLAMA_BASE, model_type: "mamba" }, "model_type 'mamba' is not supported"],
  ];
  for (const [what, cfg, msg] of bad) {
    it(what, () => {
      expect(() => parseModelConfig(cfg, "c.json")).toThrow(`c.json: ${msg}`);
    });
  }

  it("a checkpoint of another family is refused naming the tensor it lacks", async () => {
    const gpt2 = openSafetensors(checkpointToSafetensors(randomCheckpoint(GPT2_BASE, 1)), "gpt2.safetensors");
    await expect(DecoderModel.load(parseModelConfig(LLAMA_BASE), gpt2, { threads: 1, label: "x" })).rejects.toThrow(
      "x: no 'model.embed_tokens.weight': not an LLaMA checkpoint",
    );
  });

  it("GPT-2's causal-mask buffers in older files are skipped; another stray tensor is refused", async () => {
    const ck = randomCheckpoint(GPT2_BASE, 1);
    ck.set("transformer.h.0.attn.bias", { shape: [1, 1, 64, 64], data: new Float32Array(64 * 64) });
    ck.set("transformer.h.0.attn.masked_bias", { shape: [], data: new Float32Array(1) });
    const ok = openSafetensors(checkpointToSafetensors(ck), "gpt2.safetensors");
    await expect(DecoderModel.load(parseModelConfig(GPT2_BASE), ok, { threads: 1 })).resolves.toBeDefined();
    ck.set("transformer.h.0.attn.extra", { shape: [2], data: new Float32Array(2) });
    const bad = openSafetensors(checkpointToSafetensors(ck), "gpt2.safetensors");
    await expect(DecoderModel.load(parseModelConfig(GPT2_BASE), bad, { threads: 1, label: "x" })).rejects.toThrow(
      "x: unexpected tensor 'transformer.h.0.attn.extra' (not part of this GPT-2 config)",
    );
  });
});

describe("the command line on every family's fixture (dist/cli.js, as users run it)", () => {
  const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
  const run = (args: string[]) => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'npm run build' first`);
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", maxBuffer: 256 << 20 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  for (const f of FIXTURES) {
    it(`${f.name}: logits --json within 1e-4 of transformers, generate --json gives its 32 greedy tokens`, () => {
      const ids = f.ref.input_ids.join(",");
      const l = run(["logits", "--model", fixture(f.name), "--ids", ids, "--json"]);
      expect(l.code, l.err).toBe(0);
      const rows: number[][] = JSON.parse(l.out).logits;
      expect(rows).toHaveLength(f.ref.input_ids.length);
      const d = maxAbsDiff(rows.flat(), f.ref.logits.flat()).max;
      console.log(`${f.name} CLI logits max|Δ| ${d.toExponential(2)}`);
      expect(d).toBeLessThanOrEqual(LOGIT_TOL);
      const g = run(["generate", "--model", fixture(f.name), "--ids", ids, "--max-new-tokens", "32", "--ignore-eos", "--json"]);
      expect(g.code, g.err).toBe(0);
      expect(JSON.parse(g.out).new_tokens).toEqual(f.ref.generation.new_tokens);
    });
  }

  it("a text prompt for a model without tokenizer files is one clear line", () => {
    const r = run(["generate", "--model", fixture("llama-tiny"), "--prompt", "Hello"]);
    expect(r.code).toBe(1);
    expect(r.err.trim().split("\n")).toHaveLength(1);
    expect(r.err).toMatch(/has no tokenizer files .* pass --tokenizer DIR, or token ids with --ids/);
  });
});
