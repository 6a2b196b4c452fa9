// The float64 LLaMA / Qwen2 / GPT-2 reference (test/family-reference.ts) against transformers'
// outputs for the tiny fixtures, and property checks that make it trustworthy for configurations
// the fixtures do not cover (GQA/MQA, rope scaling, Qwen2 biases, tied heads, GPT-2 attention
// scaling, padding, unprefixed names).
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { openSafetensors } from "../src/formats/safetensors.js";
import {
  argmaxRange,
  checkpointToSafetensors,
  getterFromMap,
  getterFromSource,
  randomCheckpoint,
  referenceForward,
  referenceGreedy,
  type Checkpoint,
  type HfConfig,
  type Tensor,
} from "./family-reference.js";
import { attention, linear, rmsNorm, silu } from "./ref.js";
import { closeness, maxAbsDiff } from "./helpers.js";

const LOGIT_TOL = 1e-4;
const EXACT = 1e-12; // two f64 evaluations of the same maths

const fixture = (name: string) => {
  const dir = fileURLToPath(new URL(`./fixtures/${name}/`, import.meta.url));
  return {
    config: JSON.parse(readFileSync(dir + "config.json", "utf8")) as HfConfig,
    ref: JSON.parse(readFileSync(dir + "reference.json", "utf8")),
    get: getterFromSource(openSafetensors(new Uint8Array(readFileSync(dir + "model.safetensors")), `${name}/model.safetensors`)),
  };
};

for (const name of ["llama-tiny", "gpt2-tiny"]) {
  describe(`family reference vs transformers: ${name}`, () => {
    const { config, ref, get } = fixture(name);
    const V = config.vocab_size as number;

    it("logits, argmax and every hidden state", () => {
      const r = referenceForward(config, get, [ref.input_ids]);
      const logits = maxAbsDiff(r.logits, ref.logits.flat());
      const emb = maxAbsDiff(r.hiddenStates.embeddings, ref.hidden_states.embeddings.flat());
      const layers = r.hiddenStates.layers.map((h, i) => maxAbsDiff(h, ref.hidden_states.layers[i].flat()).max);
      // GPT-2's ln_f weights are ~125 in the fixture (outputs up to ~425): transformers' f32 rounding
      // in that tensor scales with its largest values, not with each element.
      const refFinal: number[] = ref.hidden_states.final.flat();
      const finScale = Math.max(...refFinal.map(Math.abs));
      const fin = closeness(r.hiddenStates.final, refFinal, 1e-4 + 1e-5 * finScale, 0);
      console.log(
        `${name}: logits max|Δ| ${logits.max.toExponential(2)}, embeddings ${emb.max.toExponential(2)}, ` +
          `layers ${layers.map((v) => v.toExponential(2)).join(" ")}, final ${fin.maxAbs.toExponential(2)} (max |final| ${finScale.toFixed(1)})`,
      );
      expect(r.hiddenStates.layers.length).toBe(ref.hidden_states.layers.length);
      expect(logits.max).toBeLessThanOrEqual(LOGIT_TOL);
      expect(emb.max).toBeLessThanOrEqual(1e-6);
      for (const v of layers) expect(v).toBeLessThanOrEqual(LOGIT_TOL);
      expect(fin.ratio, fin.message).toBeLessThanOrEqual(1);
      const T = ref.input_ids.length;
      expect(Array.from({ length: T }, (_, t) => argmaxRange(r.logits, t * V, (t + 1) * V))).toEqual(ref.argmax);
    });

    it("greedy generation gives transformers' 32 tokens", () => {
      expect(referenceGreedy(config, get, [ref.input_ids], 32)).toEqual([ref.generation.new_tokens]);
    });

    it("left-padded batch: logits of the valid positions and batched greedy generation", () => {
      const pb = ref.padded_batch;
      const r = referenceForward(config, get, pb.input_ids, { attentionMask: pb.attention_mask });
      const T = pb.input_ids[0].length;
      pb.rows.forEach((row: { first_valid_position: number; logits: number[][] }, b: number) => {
        const d = maxAbsDiff(r.logits.subarray((b * T + row.first_valid_position) * V, (b + 1) * T * V), row.logits.flat());
        console.log(`${name}: padded row ${b} max|Δ| ${d.max.toExponential(2)}`);
        expect(d.max, `row ${b}`).toBeLessThanOrEqual(LOGIT_TOL);
      });
      const n = pb.generation.new_tokens[0].length;
      expect(referenceGreedy(config, get, pb.input_ids, n, { attentionMask: pb.attention_mask })).toEqual(pb.generation.new_tokens);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// properties on random checkpoints

const llama = (over: HfConfig = {}): HfConfig => ({
  model_type: "llama",
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: false,
  ...over,
});
const qwen2 = (over: HfConfig = {}): HfConfig => ({ ...llama(over), model_type: "qwen2", ...over });
const gpt2 = (over: HfConfig = {}): HfConfig => ({
  model_type: "gpt2",
  vocab_size: 64,
  n_embd: 32,
  n_head: 4,
  n_layer: 3,
  n_positions: 32,
  n_inner: null,
  activation_function: "gelu_new",
  layer_norm_epsilon: 1e-5,
  ...over,
});
const IDS = [5, 17, 3, 60, 42, 8, 33, 21, 9, 50, 2];
const fwd = (config: HfConfig, ck: Map<string, Tensor>, ids = [IDS], opts = {}) => referenceForward(config, getterFromMap(ck), ids, opts);
const clone = (ck: Checkpoint): Checkpoint => new Map([...ck].map(([k, v]) => [k, { shape: [...v.shape], data: v.data.slice() }]));

/** LLaMA assembled from the kernel references in test/ref.ts (f32 between steps), plain MHA. */
function composedLlama(config: HfConfig, ck: Checkpoint, ids: number[]): Float64Array {
  const C = config.hidden_size as number,
    H = config.num_attention_heads as number,
    D = C / H;
  const F = config.intermediate_size as number,
    V = config.vocab_size as number,
    T = ids.length;
  const eps = config.rms_norm_eps as number;
  const w = (n: string) => ck.get(n)!.data;
  const f32 = (x: Float64Array) => Float32Array.from(x);
  let x = new Float64Array(T * C);
  ids.forEach((id, t) => x.set(w("model.embed_tokens.weight").subarray(id * C, (id + 1) * C), t * C));
  const rotate = (m: Float64Array) => {
    for (let t = 0; t < T; t++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < D / 2; i++) {
          // (a, b) = (x[i], x[i + D/2]) turned by angle t·θ_i, as a complex product (a + ib)·e^{iφ}
          const phi = t * Math.pow(10000, -i / (D / 2));
          const a = m[t * C + h * D + i],
            b = m[t * C + h * D + i + D / 2];
          m[t * C + h * D + i] = a * Math.cos(phi) - b * Math.sin(phi);
          m[t * C + h * D + i + D / 2] = a * Math.sin(phi) + b * Math.cos(phi);
        }
    return f32(m);
  };
  for (let l = 0; l < (config.num_hidden_layers as number); l++) {
    const p = `model.layers.${l}.`;
    const h = f32(rmsNorm(f32(x), w(p + "input_layernorm.weight"), T, C, eps));
    const q = rotate(linear(h, w(p + "self_attn.q_proj.weight"), null, T, C, C));
    const k = rotate(linear(h, w(p + "self_attn.k_proj.weight"), null, T, C, C));
    const v = f32(linear(h, w(p + "self_attn.v_proj.weight"), null, T, C, C));
    const a = f32(attention(q, k, v, null, T, 0, H, D).out);
    const o = linear(a, w(p + "self_attn.o_proj.weight"), null, T, C, C);
    x = x.map((xv, n) => xv + o[n]);
    const h2 = f32(rmsNorm(f32(x), w(p + "post_attention_layernorm.weight"), T, C, eps));
    const g = linear(h2, w(p + "mlp.gate_proj.weight"), null, T, C, F);
    const u = linear(h2, w(p + "mlp.up_proj.weight"), null, T, C, F);
    const dn = linear(f32(g.map((gv, n) => silu(gv) * u[n])), w(p + "mlp.down_proj.weight"), null, T, F, C);
    x = x.map((xv, n) => xv + dn[n]);
  }
  const fin = f32(rmsNorm(f32(x), w("model.norm.weight"), T, C, eps));
  return linear(fin, w("lm_head.weight"), null, T, C, V);
}

describe("family reference: attention heads", () => {
  it("MHA (num_key_value_heads = H) equals LLaMA assembled independently from the kernel references", () => {
    const config = llama({ num_key_value_heads: 4 });
    const ck = randomCheckpoint(config, 1);
    const d = maxAbsDiff(fwd(config, ck).logits, composedLlama(config, ck, IDS));
    console.log(`MHA vs composed f32 kernels: max|Δ| ${d.max.toExponential(2)}`);
    expect(d.max).toBeLessThanOrEqual(LOGIT_TOL);
    // ...and with num_key_value_heads omitted (HF's default: = H)
    const { num_key_value_heads: _, ...noKv } = config;
    expect(maxAbsDiff(fwd(noKv, ck).logits, fwd(config, ck).logits).max).toBe(0);
  });

  for (const Hkv of [2, 1]) {
    it(`GQA with ${Hkv} KV head(s) equals MHA whose K/V rows repeat each KV head (query head h reads h // ${4 / Hkv})`, () => {
      const gqa = llama({ num_key_value_heads: Hkv });
      const mha = llama({ num_key_value_heads: 4 });
      const ck = randomCheckpoint(gqa, 2 + Hkv);
      const D = 8,
        C = 32;
      const expanded = clone(ck);
      for (let l = 0; l < 2; l++)
        for (const m of ["k_proj", "v_proj"]) {
          const name = `model.layers.${l}.self_attn.${m}.weight`;
          const src = ck.get(name)!.data;
          const data = new Float32Array(4 * D * C);
          for (let h = 0; h < 4; h++)
            data.set(src.subarray(Math.floor(h / (4 / Hkv)) * D * C, (Math.floor(h / (4 / Hkv)) + 1) * D * C), h * D * C);
          expanded.set(name, { shape: [4 * D, C], data });
        }
      const a = fwd(gqa, ck),
        b = fwd(mha, expanded);
      expect(maxAbsDiff(a.logits, b.logits).max).toBeLessThanOrEqual(EXACT);
      // the grouping matters: pairing heads the other way round changes the logits
      const wrong = clone(expanded);
      for (let l = 0; l < 2; l++) {
        const name = `model.layers.${l}.self_attn.k_proj.weight`;
        const s = expanded.get(name)!.data,
          data = new Float32Array(s.length);
        for (let h = 0; h < 4; h++) data.set(s.subarray(((h + 1) % 4) * D * C, (((h + 1) % 4) + 1) * D * C), h * D * C);
        wrong.set(name, { shape: [4 * D, C], data });
      }
      if (Hkv > 1) expect(maxAbsDiff(a.logits, fwd(mha, wrong).logits).max).toBeGreaterThan(1e-3);
    });
  }
});

describe("family reference: rotary embeddings", () => {
  for (const f of [2, 4]) {
    it(`rope_scaling linear ×${f} at position p equals no scaling at p/${f}`, () => {
      const plain = llama();
      const scaled = llama({ rope_scaling: { type: "linear", factor: f } });
      const ck = randomCheckpoint(plain, 10 + f);
      const a = fwd(scaled, ck, [IDS], { positionIds: [IDS.map((_, t) => t * f)] });
      const b = fwd(plain, ck, [IDS]);
      expect(maxAbsDiff(a.logits, b.logits).max).toBeLessThanOrEqual(1e-9);
      for (let i = 0; i < 2; i++) expect(maxAbsDiff(a.hiddenStates.layers[i], b.hiddenStates.layers[i]).max).toBeLessThanOrEqual(1e-9);
      // and scaling does move the logits at the ordinary positions
      expect(maxAbsDiff(fwd(scaled, ck).logits, b.logits).max).toBeGreaterThan(1e-3);
    });
  }

  it("rope_theta matters, positions are relative (a shift of every position id changes nothing), other rope types throw", () => {
    const config = llama();
    const ck = randomCheckpoint(config, 20);
    const base = fwd(config, ck);
    expect(maxAbsDiff(fwd(llama({ rope_theta: 500 }), ck).logits, base.logits).max).toBeGreaterThan(1e-3);
    const shifted = fwd(config, ck, [IDS], { positionIds: [IDS.map((_, t) => t + 7)] });
    expect(maxAbsDiff(shifted.logits, base.logits).max).toBeLessThanOrEqual(1e-9);
    for (const type of ["dynamic", "yarn", "llama3"]) {
      expect(() => fwd(llama({ rope_scaling: { type, factor: 2 } }), ck)).toThrow(/rope_scaling/);
    }
  });
});

describe("family reference: Qwen2 and LLaMA variants", () => {
  it("Qwen2 with all-zero q/k/v biases equals LLaMA; with biases it equals LLaMA attention_bias with o_proj.bias = 0", () => {
    const q = qwen2();
    const ck = randomCheckpoint(q, 30);
    const biasNames = [...ck.keys()].filter((n) => n.endsWith(".bias"));
    expect(biasNames.length).toBe(6); // q, k, v per layer, no o_proj bias
    const zero = clone(ck);
    for (const n of biasNames) zero.get(n)!.data.fill(0);
    const noBias = new Map([...ck].filter(([n]) => !n.endsWith(".bias")));
    const qz = fwd(q, zero);
    expect(maxAbsDiff(qz.logits, fwd(llama(), noBias).logits).max).toBeLessThanOrEqual(EXACT);
    const withO = clone(ck);
    for (let l = 0; l < 2; l++) withO.set(`model.layers.${l}.self_attn.o_proj.bias`, { shape: [32], data: new Float32Array(32) });
    const qb = fwd(q, ck);
    expect(maxAbsDiff(qb.logits, fwd(llama({ attention_bias: true }), withO).logits).max).toBeLessThanOrEqual(EXACT);
    expect(maxAbsDiff(qb.logits, qz.logits).max).toBeGreaterThan(1e-3);
    // LLaMA's o_proj bias is applied
    withO.get("model.layers.0.self_attn.o_proj.bias")!.data.fill(0.5);
    expect(maxAbsDiff(qb.logits, fwd(llama({ attention_bias: true }), withO).logits).max).toBeGreaterThan(1e-3);
  });

  it("tie_word_embeddings: no lm_head.weight, the head is embed_tokens", () => {
    const tied = llama({ tie_word_embeddings: true });
    const ck = randomCheckpoint(tied, 40);
    expect(ck.has("lm_head.weight")).toBe(false);
    const untied = clone(ck);
    untied.set("lm_head.weight", { ...ck.get("model.embed_tokens.weight")!, data: ck.get("model.embed_tokens.weight")!.data.slice() });
    expect(maxAbsDiff(fwd(tied, ck).logits, fwd(llama(), untied).logits).max).toBe(0);
    expect(() => fwd(llama(), ck)).toThrow(/lm_head\.weight/);
  });

  it("missing tensors and wrong shapes are errors, not silent zeros", () => {
    const config = qwen2();
    const ck = randomCheckpoint(config, 41);
    const noBias = clone(ck);
    noBias.delete("model.layers.1.self_attn.k_proj.bias");
    expect(() => fwd(config, noBias)).toThrow(/k_proj\.bias/);
    const bad = clone(ck);
    bad.set("model.layers.0.self_attn.k_proj.weight", { shape: [32, 32], data: new Float32Array(32 * 32) });
    expect(() => fwd(config, bad)).toThrow(/shape/);
  });
});

describe("family reference: GPT-2 variants", () => {
  /** Scales the query third of c_attn (weight columns and bias) of layer i by s(i), in f64. */
  const scaleQ = (ck: Checkpoint, layers: number, s: (i: number) => number) => {
    const out = new Map<string, Tensor>([...ck].map(([k, v]) => [k, { shape: v.shape, data: Float64Array.from(v.data) }]));
    for (let i = 0; i < layers; i++) {
      const w = out.get(`transformer.h.${i}.attn.c_attn.weight`)!.data,
        b = out.get(`transformer.h.${i}.attn.c_attn.bias`)!.data;
      for (let r = 0; r < 32; r++) for (let c = 0; c < 32; c++) w[r * 96 + c] *= s(i);
      for (let c = 0; c < 32; c++) b[c] *= s(i);
    }
    return out;
  };

  it("scale_attn_by_inverse_layer_idx equals dividing layer i's queries by i + 1", () => {
    const plain = gpt2(),
      inv = gpt2({ scale_attn_by_inverse_layer_idx: true });
    const ck = randomCheckpoint(plain, 50);
    const a = fwd(inv, ck);
    expect(
      maxAbsDiff(
        a.logits,
        fwd(
          plain,
          scaleQ(ck, 3, (i) => 1 / (i + 1)),
        ).logits,
      ).max,
    ).toBeLessThanOrEqual(1e-9);
    expect(maxAbsDiff(a.hiddenStates.layers[0], fwd(plain, ck).hiddenStates.layers[0]).max).toBe(0); // 1/(0+1)
    expect(maxAbsDiff(a.logits, fwd(plain, ck).logits).max).toBeGreaterThan(1e-3);
  });

  it("scale_attn_weights false equals queries multiplied by √D", () => {
    const ck = randomCheckpoint(gpt2(), 51);
    const a = fwd(gpt2({ scale_attn_weights: false }), ck);
    expect(
      maxAbsDiff(
        a.logits,
        fwd(
          gpt2(),
          scaleQ(ck, 3, () => Math.sqrt(8)),
        ).logits,
      ).max,
    ).toBeLessThanOrEqual(1e-9);
  });

  it("names without the transformer. prefix, n_inner, activations, an untied head", () => {
    const config = gpt2({ n_inner: 40 });
    const ck = randomCheckpoint(config, 52);
    expect(ck.get("transformer.h.0.mlp.c_fc.weight")!.shape).toEqual([32, 40]);
    const bare = new Map([...ck].map(([n, t]) => [n.replace(/^transformer\./, ""), t]));
    const a = fwd(config, ck);
    expect(maxAbsDiff(a.logits, fwd(config, bare).logits).max).toBe(0);
    const bareRandom = randomCheckpoint(config, 52, { gpt2Prefix: false });
    expect([...bareRandom.keys()]).toEqual([...bare.keys()]);
    expect(maxAbsDiff(a.logits, fwd(config, bareRandom).logits).max).toBe(0);
    const exact = fwd(gpt2({ n_inner: 40, activation_function: "gelu" }), ck).logits;
    const dg = maxAbsDiff(a.logits, exact).max;
    expect(dg).toBeGreaterThan(0); // gelu_new vs erf gelu: close, not equal
    expect(dg).toBeLessThan(0.05);
    expect(maxAbsDiff(a.logits, fwd(gpt2({ n_inner: 40, activation_function: "relu" }), ck).logits).max).toBeGreaterThan(1e-2);
    const untied = clone(ck);
    untied.set("lm_head.weight", { shape: [64, 32], data: ck.get("transformer.wte.weight")!.data.slice() });
    expect(maxAbsDiff(a.logits, fwd(gpt2({ n_inner: 40, tie_word_embeddings: false }), untied).logits).max).toBe(0);
    expect(() => fwd(config, ck, [Array.from({ length: 33 }, () => 1)])).toThrow(/n_positions/);
  });
});

describe("family reference: batches, padding and generation", () => {
  const cases: [string, HfConfig][] = [
    ["llama GQA", llama()],
    ["qwen2 MQA, rope ×2, tied", qwen2({ num_key_value_heads: 1, rope_scaling: { type: "linear", factor: 2 }, tie_word_embeddings: true })],
    ["gpt2 inverse-layer scaling", gpt2({ scale_attn_by_inverse_layer_idx: true })],
  ];
  for (const [label, config] of cases) {
    it(`${label}: causal, left padding (any pad ids) leaves valid positions unchanged, batched greedy = per-row greedy`, () => {
      const ck = randomCheckpoint(config, 60);
      const V = 64,
        T = IDS.length;
      const base = fwd(config, ck);
      // causality: changing the last token changes nothing before it
      const changed = fwd(config, ck, [[...IDS.slice(0, -1), 7]]);
      expect(maxAbsDiff(changed.logits.subarray(0, (T - 1) * V), base.logits.subarray(0, (T - 1) * V)).max).toBe(0);
      // left padding with arbitrary ids under mask 0
      const short = IDS.slice(4);
      const ids = [IDS, [61, 0, 13, 7, ...short]];
      const mask = [IDS.map(() => 1), [0, 0, 0, 0, ...short.map(() => 1)]];
      const r = fwd(config, ck, ids, { attentionMask: mask });
      const alone = fwd(config, ck, [short]);
      expect(maxAbsDiff(r.logits.subarray(0, T * V), base.logits).max).toBe(0);
      expect(maxAbsDiff(r.logits.subarray((T + 4) * V, 2 * T * V), alone.logits).max).toBeLessThanOrEqual(EXACT);
      expect(r.logits.every(Number.isFinite)).toBe(true); // padded positions too
      const get = getterFromMap(ck);
      const batch = referenceGreedy(config, get, ids, 8, { attentionMask: mask });
      expect(batch).toEqual([referenceGreedy(config, get, [IDS], 8)[0], referenceGreedy(config, get, [short], 8)[0]]);
    });
  }

  it("eos: a finished row continues with the pad id; generation stops once every row is done", () => {
    const config = llama();
    const get = getterFromMap(randomCheckpoint(config, 70));
    const free = referenceGreedy(config, get, [IDS], 6)[0];
    const eos = free[2];
    const out = referenceGreedy(config, get, [IDS], 6, { eosTokenId: eos, padTokenId: 0 })[0];
    expect(out).toEqual(free.slice(0, free.indexOf(eos) + 1));
  });

  it("a random checkpoint written with writeSafetensors reads back to the same forward pass", () => {
    for (const config of [qwen2({ num_key_value_heads: 1 }), gpt2()]) {
      const ck = randomCheckpoint(config, 80);
      const src = openSafetensors(checkpointToSafetensors(ck), "random.safetensors");
      expect(src.tensors().map((t) => t.name)).toEqual([...ck.keys()]);
      expect(maxAbsDiff(referenceForward(config, getterFromSource(src), [IDS]).logits, fwd(config, ck).logits).max).toBe(0);
    }
    // seeded: the same seed gives the same weights, another seed others
    const a = randomCheckpoint(gpt2(), 1),
      b = randomCheckpoint(gpt2(), 1),
      c = randomCheckpoint(gpt2(), 2);
    expect(a.get("transformer.h.0.attn.c_attn.weight")!.data).toEqual(b.get("transformer.h.0.attn.c_attn.weight")!.data);
    expect(a.get("transformer.h.0.attn.c_attn.weight")!.data).not.toEqual(c.get("transformer.h.0.attn.c_attn.weight")!.data);
  });
});
