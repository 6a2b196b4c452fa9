// The f16 KV cache (kvDtype "f16"): the conversion against a reference written here, the kernels
// through the loader, then every family's fixture decoded with an f16 cache against the f32 one,
// the options' paths (forward, generate, greedyBatch, the engine, the CLI), its memory, and what is
// refused.
//
// Bounds (measured on the fixtures, then given about twice the room; the figures are printed):
//   logits, f16 vs f32 cache, over a prefill and 32 teacher-forced decode steps: max|Δ| ≤ 2e-3 of
//     the run's largest |logit| (measured 3.0e-4 OPT, 5.2e-4 GPT-2, 9.9e-4 LLaMA: 6.3e-3, 8.5e-3,
//     2.1e-2 absolute, logits up to ~21). Each key and value moves by ≤ 2^-12 of itself (nearest
//     half), so a score by ~2^-12·|q||k| and an attention output by ~2^-12·|v|; the layers after
//     carry it to the logits. The same bound holds for a left-padded batch, and for the hidden
//     states relative to their largest value.
//   greedy tokens with an f16 cache: all 32 equal the f32 cache's (= transformers') on every
//     fixture, measured; asserted: at least 31 of 32, and the first 8.
// The rounding itself is checked exactly (every bit) against refHalf below, so a conversion off by
// one half-ulp (truncating, say) fails there even where the model's logits would still pass.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { Arena } from "../src/arena.js";
import { openSafetensors } from "../src/formats/safetensors.js";
import { parseModelConfig, type ModelConfig } from "../src/models/families/index.js";
import { DecoderModel, type KVCache, type KVDType } from "../src/models/decoder.js";
import { generate, greedyBatch } from "../src/generate/index.js";
import { Engine } from "../src/server/engine.js";
import { loadKernels } from "../src/kernels.js";
import { loadWasm, type Wasm } from "../src/wasm.js";
import { f32ToF16 } from "../src/formats/dtype.js";
import { BUILDS, maxAbsDiff } from "./helpers.js";

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}/`, import.meta.url));

// ---- a reference f32 → f16 rounding, by arithmetic (no bit tricks) ----

/** The finite non-negative halves' values, ascending (index = bits): 0 … 65504. */
const HALVES = Float64Array.from({ length: 0x7c00 }, (_, h) => {
  const e = h >> 10,
    m = h & 0x3ff;
  return e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15);
});

/**
 * The nearest half to the f32 value x, ties to the even bit pattern, as IEEE 754 rounds: found by
 * binary search among the halves' values; |x| ≥ 65520 (halfway past 65504) is ±inf; NaN is the
 * quiet NaN 0x7e00 with x's sign (the kernels' choice; IEEE leaves the payload open).
 */
function refHalf(x: number): number {
  x = Math.fround(x);
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  if (Number.isNaN(x)) return ((new Uint32Array(new Float32Array([x]).buffer)[0] >>> 31) << 15) | 0x7e00;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  let lo = 0,
    hi = HALVES.length - 1; // HALVES[lo] ≤ a < HALVES[hi + 1]
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (HALVES[mid] <= a) lo = mid;
    else hi = mid - 1;
  }
  if (lo === HALVES.length - 1) return sign | lo; // [65504, 65520): 65504
  const below = a - HALVES[lo],
    above = HALVES[lo + 1] - a;
  const h = below < above ? lo : above < below ? lo + 1 : lo % 2 === 0 ? lo : lo + 1;
  return sign | h;
}

/** x rounded to a half and back, as a number (what an f16 cache holds for x). */
function roundToHalf(x: number): number {
  const h = refHalf(x);
  const mag = (h & 0x7c00) === 0x7c00 ? ((h & 0x3ff) === 0 ? Infinity : NaN) : HALVES[h & 0x7fff];
  return h & 0x8000 ? -mag : mag;
}

/** f32 values whose halves are worth checking: every edge of the format, and ±3 f32 ulps around each. */
function edgeValues(): Float32Array {
  const edges = [
    0,
    2 ** -24,
    2 ** -25,
    3 * 2 ** -25,
    2 ** -24 * 1023,
    2 ** -14,
    2 ** -14 - 2 ** -25,
    1,
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
    0.1,
    1 / 3,
    2048,
    2049,
    2051,
    65504,
    65519.99,
    65520,
    1e5,
    3.4028234663852886e38,
    1e-30,
    2 ** -126,
    2 ** -149,
    Infinity,
  ];
  const out: number[] = [];
  const f = new Float32Array(1),
    u = new Uint32Array(f.buffer);
  for (const e of edges) {
    f[0] = e;
    const b = u[0];
    for (let k = -3; k <= 3; k++) {
      if (b + k < 0 || b + k > 0x7f800000) continue;
      u[0] = b + k;
      out.push(f[0], -f[0]);
    }
  }
  out.push(NaN, -NaN, -0);
  return Float32Array.from(out);
}

describe("the f32 → f16 rounding of kvStoreF16, against a reference written here", () => {
  it("the reference itself: numpy's float16 on known values", () => {
    const cases: [number, number][] = [
      [0, 0],
      [-0, 0x8000],
      [65504, 0x7bff],
      [65519.98828125, 0x7bff],
      [65520, 0x7c00],
      [1.00048828125, 0x3c00], // 1 + 2^-11: a tie, to even
      [1.00146484375, 0x3c02], // 1 + 3·2^-11: a tie, up to even
      [2 ** -24, 0x1],
      [2 ** -25, 0x0],
      [3 * 2 ** -26, 0x1],
      [6.0999998822808266e-5, 0x3ff],
      [-2.499999936844688e-6, 0x802a],
      [0.1, 0x2e66],
      [-Infinity, 0xfc00],
      [6.1005353927612305e-5, 0x400],
    ];
    for (const [x, h] of cases) expect(refHalf(x), String(x)).toBe(h);
  });

  for (const build of BUILDS) {
    describe(`${build} build`, () => {
      let wasm: Wasm;
      let arena: Arena;
      beforeAll(async () => {
        wasm = await loadWasm({ build, initialBytes: 64 << 20 });
        arena = new Arena(wasm);
      });

      /** kvStoreF16 (or its scalar twin) of xs as one row (T = 1, H = 1, D = n): the halves' bits. */
      const store = (xs: Float32Array, scalar: boolean): Uint16Array => {
        const mark = arena.mark();
        try {
          const src = arena.put(xs);
          const dst = arena.alloc(xs.length * 2 + 16);
          (scalar ? wasm.k.kvStoreF16Scalar : wasm.k.kvStoreF16)(dst, src, 1, 0, 1, xs.length, 1);
          return new Uint16Array(wasm.memory.buffer, dst, xs.length).slice();
        } finally {
          arena.reset(mark);
        }
      };
      const expectHalves = (what: string, xs: Float32Array) => {
        for (const scalar of [false, true]) {
          const got = store(xs, scalar);
          let bad = -1;
          for (let i = 0; i < xs.length && bad < 0; i++) if (got[i] !== refHalf(xs[i])) bad = i;
          const x = xs[bad];
          expect(
            bad,
            `${what}${scalar ? " (scalar)" : ""}: f16(${x}) = 0x${got[bad]?.toString(16)}, want 0x${refHalf(x).toString(16)}`,
          ).toBe(-1);
        }
      };

      it("±0, subnormal halves and their ties, both ends of the normal range, overflow to ±inf, ±inf, NaN", () => {
        const xs = edgeValues();
        expectHalves("edges", xs);
        // and the named ones, spelled out
        const got = store(Float32Array.from([-0, 2 ** -24, 2 ** -25, 65504, 65520, -1e5, Infinity, NaN]), false);
        expect(Array.from(got)).toEqual([0x8000, 0x1, 0x0, 0x7bff, 0x7c00, 0xfc00, 0x7c00, 0x7e00]);
        // src/formats' converter (numpy's algorithm) agrees on every non-NaN value
        xs.forEach((x) => Number.isNaN(x) || expect(f32ToF16(x), String(x)).toBe(refHalf(x)));
      });

      it("one f32 bit pattern in 65521 over all of them, and 100 000 values spread like activations", () => {
        const sweep = new Float32Array(65536);
        const u = new Uint32Array(sweep.buffer);
        for (let i = 0; i < u.length; i++) u[i] = (i * 65521) >>> 0;
        expectHalves("sweep", sweep);
        let s = 12345;
        const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
        const acts = Float32Array.from({ length: 100_000 }, () => rnd() * 10 ** (rnd() * 6));
        expectHalves("activations", acts);
      });
    });
  }
});

describe("wasm-lm/kernels attention with kvDtype f16", () => {
  it("is attention on k and v rounded to halves (by the reference), bit for bit, SIMD and scalar", async () => {
    const k = await loadKernels();
    let s = 7;
    const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    for (const [T, past, H, Hkv, D] of [
      [1, 20, 4, 2, 17],
      [5, 3, 6, 3, 64],
      [3, 0, 3, 3, 5],
    ]) {
      const S = past + T;
      const q = Float32Array.from({ length: T * H * D }, () => 3 * rnd());
      const kk = Float32Array.from({ length: S * Hkv * D }, (_, i) => (i % 11 === 0 ? 1e-6 * rnd() : rnd()));
      const v = Float32Array.from({ length: S * Hkv * D }, rnd);
      for (const scalar of [false, true]) {
        const got = k.attention(q, kk, v, T, H, Hkv, D, { past, scalar, kvDtype: "f16" });
        const want = k.attention(q, kk.map(roundToHalf), v.map(roundToHalf), T, H, Hkv, D, { past, scalar });
        expect(got, `T=${T} past=${past} H=${H} Hkv=${Hkv} D=${D}${scalar ? " scalar" : ""}`).toEqual(want);
        // and the rounding matters: the unrounded inputs give something else
        expect(maxAbsDiff(got, k.attention(q, kk, v, T, H, Hkv, D, { past, scalar })).max).toBeGreaterThan(0);
      }
    }
    expect(() =>
      k.attention(new Float32Array(4), new Float32Array(4), new Float32Array(4), 1, 1, 1, 4, { kvDtype: "bf16" as KVDType }),
    ).toThrow("wasm-lm: attention: kvDtype 'bf16' is not supported (f32, f16)");
  });
});

// ---- the model, on every family's fixture ----

interface Fixture {
  name: string;
  config: ModelConfig;
  file: () => ReturnType<typeof openSafetensors>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  ref: any;
}

const FIXTURES: Fixture[] = ["opt-tiny", "llama-tiny", "gpt2-tiny"].map((name) => {
  const dir = fixture(name);
  const bytes = new Uint8Array(readFileSync(join(dir, "model.safetensors")));
  return {
    name,
    config: parseModelConfig(readFileSync(join(dir, "config.json"), "utf8"), `${name}/config.json`),
    file: () => openSafetensors(bytes, `${name}/model.safetensors`),
    ref: JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")),
  };
});

/** max|Δ| of the logits, f16 cache vs f32, relative to the largest |logit| of the run (see the header). */
const LOGITS_REL = 2e-3;
const STEPS = 32;

/** Largest |x| over some arrays. */
const maxAbs = (xs: ArrayLike<number>[]) => Math.max(...xs.map((a) => maxAbsDiff(a, new Float32Array(a.length)).max));

/** Prefill `prompt`, then feed `next` one token at a time: the logits of the prefill's last position and of every step. */
function teacherForced(model: DecoderModel, prompt: number[], next: number[], kvDtype: KVDType): Float32Array[] {
  const cache = model.createCache(1, prompt.length + next.length, { kvDtype });
  try {
    const out = [model.forward([prompt], { cache, logits: "last" }).logits];
    for (const id of next) out.push(model.forward([[id]], { cache, logits: "last" }).logits);
    return out;
  } finally {
    cache.release();
  }
}

const greedy = async (m: DecoderModel, ids: number[], kvDtype: KVDType, n = STEPS) =>
  (await generate(m, undefined, ids, { maxNewTokens: n, ignoreEos: true, kvDtype })).new_tokens;

for (const f of FIXTURES) {
  describe(`${f.name}: decoding with an f16 KV cache`, () => {
    for (const build of BUILDS) {
      it(`${build}: logits within ${LOGITS_REL}·max|logit| of the f32 cache's over a prefill and ${STEPS} steps; greedy tokens agree`, async () => {
        const m = await DecoderModel.load(f.config, f.file(), { threads: 1, build, label: f.name });
        const prompt: number[] = f.ref.input_ids;
        const want32 = await greedy(m, prompt, "f32");
        expect(want32).toEqual(f.ref.generation.new_tokens); // the baseline is transformers'
        const a = teacherForced(m, prompt, want32, "f32");
        const b = teacherForced(m, prompt, want32, "f16");
        let worst = 0;
        for (let i = 0; i < a.length; i++) worst = Math.max(worst, maxAbsDiff(a[i], b[i]).max);
        const scale = maxAbs(a);
        const toks = await greedy(m, prompt, "f16");
        const agree = toks.filter((t, i) => t === want32[i]).length;
        console.log(
          `${f.name} ${build}: f16 KV cache vs f32: logits max|Δ| ${worst.toExponential(2)} ` +
            `(${(worst / scale).toExponential(2)} of max|logit| ${scale.toFixed(1)}), greedy ${agree}/${STEPS} equal`,
        );
        expect(worst).toBeGreaterThan(0); // the cache really is f16
        expect(worst).toBeLessThanOrEqual(LOGITS_REL * scale);
        expect(agree).toBeGreaterThanOrEqual(STEPS - 1);
        expect(toks.slice(0, 8)).toEqual(want32.slice(0, 8));
      });
    }

    it("a left-padded batch (greedyBatch, forward with a mask), attentions and hidden states", async () => {
      const m = await DecoderModel.load(f.config, f.file(), { threads: 1, label: f.name });
      const pb = f.ref.padded_batch;
      const n = pb.generation.new_tokens[0].length;
      expect(await greedyBatch(m, pb.input_ids, pb.attention_mask, n, { kvDtype: "f16" })).toEqual(pb.generation.new_tokens);
      const o = { attentionMask: pb.attention_mask, outputAttentions: true, outputHiddenStates: true };
      const r32 = m.forward(pb.input_ids, o);
      const r16 = m.forward(pb.input_ids, { ...o, kvDtype: "f16" });
      const d = maxAbsDiff(r16.logits, r32.logits).max;
      const att = Math.max(...r16.attentions!.map((p, l) => maxAbsDiff(p, r32.attentions![l]).max));
      const hid = Math.max(...r16.hiddenStates!.layers.map((h, l) => maxAbsDiff(h, r32.hiddenStates!.layers[l]).max));
      const scale = maxAbs([r32.logits]);
      console.log(
        `${f.name}: padded batch f16 vs f32 cache: logits max|Δ| ${d.toExponential(2)} (${(d / scale).toExponential(2)} of max|logit|), ` +
          `attention probabilities ${att.toExponential(2)}, hidden states ${hid.toExponential(2)}`,
      );
      expect(d).toBeLessThanOrEqual(LOGITS_REL * scale);
      expect(att).toBeGreaterThan(0);
      expect(att).toBeLessThanOrEqual(5e-3); // probabilities: measured ≤ 1.3e-3
      expect(hid).toBeLessThanOrEqual(LOGITS_REL * maxAbs(r32.hiddenStates!.layers));
    });
  });
}

describe("the f16 cache in the model", () => {
  const opt = FIXTURES[0];
  const llama = FIXTURES[1];

  it("takes half the memory of an f32 cache (the keys and values; the key mask stays u8)", async () => {
    const m = await DecoderModel.load(llama.config, llama.file(), { threads: 1 });
    const { L, KV } = m.dims;
    const B = 3,
      ctx = 40;
    const bytes = (kvDtype: KVDType) => {
      const before = m.arena.mark();
      const c = m.createCache(B, ctx, { kvDtype });
      const used = m.arena.mark() - before;
      c.release();
      return used;
    };
    const f32 = bytes("f32"),
      f16 = bytes("f16");
    const align = (n: number) => Math.ceil(n / 64) * 64;
    // 2·L·B regions of ctx·KV elements each, 64-byte aligned; the masks (B·ctx bytes) alike in both
    expect(f32 - f16).toBe(2 * L * B * (align(ctx * KV * 4) - align(ctx * KV * 2)));
    expect(f16).toBeLessThan(0.52 * f32);
    const c = m.createCache(1, 8, { kvDtype: "f16" });
    expect(c.dtype).toBe("f16");
    c.release();
    expect(m.createCache(1, 8).dtype).toBe("f32");
  });

  it("continuous batching may mix f32 and f16 caches in one step: each row gives what it gives alone", async () => {
    const m = await DecoderModel.load(opt.config, opt.file(), { threads: 1 });
    const prompts = [
      [2, 100, 200, 300],
      [2, 5, 9, 17, 33],
    ];
    const run = (kinds: KVDType[]) => {
      const caches = kinds.map((kvDtype, i) => {
        const c = m.createCache(1, 16, { kvDtype });
        m.forward([prompts[i]], { cache: c, logits: "none" });
        return c;
      });
      const step = m.forward([[7], [8]], { caches, logits: "last" }).logits;
      for (const c of caches.reverse()) c.release();
      return step;
    };
    const V = m.dims.V;
    const mixed = run(["f32", "f16"]);
    expect(mixed.subarray(0, V)).toEqual(run(["f32", "f32"]).subarray(0, V));
    expect(mixed.subarray(V)).toEqual(run(["f16", "f16"]).subarray(V));
  });

  it("the engine's slots: kvDtype f16 gives each request generate's f16 tokens, batched", async () => {
    const m = await DecoderModel.load(opt.config, opt.file(), { threads: 1 });
    const prompts = [[2, 100, 200, 300], [2, 5, 9, 17, 33, 65], [3]];
    const alone = [];
    for (const p of prompts) alone.push(await greedy(m, p, "f16", 10));
    const engine = new Engine(m, { maxBatch: 3, ctx: 32, kvDtype: "f16" });
    expect(engine.stats.kvDtype).toBe("f16");
    const got = await Promise.all(
      prompts.map(async (p) => {
        const ids: number[] = [];
        for await (const t of engine.generate({ prompt: p, maxTokens: 10 })) ids.push(t.id);
        return ids;
      }),
    );
    expect(got).toEqual(alone);
    expect(engine.stats.rows / engine.stats.steps).toBeGreaterThan(1.5);
  });

  it("a bad kvDtype is refused naming the option and the value; a cache and another kvDtype too", async () => {
    const m = await DecoderModel.load(opt.config, opt.file(), { threads: 1 });
    const mark = m.arena.mark();
    const bad = "bf16" as KVDType;
    const msg = "wasm-lm: kvDtype 'bf16' is not supported (f32, f16)";
    expect(() => m.createCache(1, 8, { kvDtype: bad })).toThrow(msg);
    expect(() => m.forward([[2, 3]], { kvDtype: bad })).toThrow(msg);
    await expect(generate(m, undefined, [2, 3], { kvDtype: bad })).rejects.toThrow(msg);
    expect(() => new Engine(m, { kvDtype: bad })).toThrow(msg);
    const c: KVCache = m.createCache(1, 8);
    expect(() => m.forward([[2, 3]], { cache: c, kvDtype: "f16" })).toThrow(
      "wasm-lm: kvDtype 'f16' was asked, but the given KV cache holds f32 (leave kvDtype out with a cache)",
    );
    expect(m.forward([[2, 3]], { cache: c, kvDtype: "f32" }).logits.length).toBe(2 * m.dims.V);
    c.release();
    expect(m.arena.mark(), "memory left allocated by a refusal").toBe(mark);
  });
});

describe("--kv-dtype on the command line (dist/cli.js)", () => {
  const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
  const run = (args: string[]) => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'npm run build' first`);
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", maxBuffer: 64 << 20 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };

  it("generate --kv-dtype f16 gives transformers' greedy tokens on the LLaMA fixture; logits within the bound", () => {
    const f = FIXTURES[1];
    const ids = f.ref.input_ids.join(",");
    const g = run(["generate", "--model", fixture(f.name), "--ids", ids, "-n", "32", "--ignore-eos", "--kv-dtype", "f16", "--json"]);
    expect(g.code, g.err).toBe(0);
    const out = JSON.parse(g.out);
    expect(out.kv_dtype).toBe("f16");
    expect(out.new_tokens).toEqual(f.ref.generation.new_tokens);
    const l = run(["logits", "--model", fixture(f.name), "--ids", ids, "--kv-dtype", "f16", "--json"]);
    expect(l.code, l.err).toBe(0);
    const ref = f.ref.logits.flat();
    expect(maxAbsDiff(JSON.parse(l.out).logits.flat(), ref).max).toBeLessThanOrEqual(LOGITS_REL * maxAbs([ref]));
  });

  it("an unknown value is a usage error naming the option and the value", () => {
    for (const cmd of ["generate", "logits", "chat", "serve"]) {
      const r = run([cmd, "--kv-dtype", "bf16"]);
      expect(r.code, cmd).toBe(2);
      expect(r.err, cmd).toMatch(/option '--kv-dtype <dtype>' argument 'bf16' is invalid\. Allowed choices are f32, f16\./);
    }
  });
});
