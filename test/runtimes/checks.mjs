// The portability checks, in plain JavaScript so every runtime runs them as they are (Node, Deno,
// Bun, workerd, a browser page and a Web Worker). Nothing here touches a file system or a URL: the
// caller hands in the library (wasm-lm's platform-neutral entry) and its kernels (wasm-lm/kernels),
// the fixture files' contents and a function that supplies a build's code ({ bytes }, { module } or
// {} to let wasm-lm locate it).
//
//   kernel     linear (GEMM T=5 and matvec T=1, awkward K=67, N=13, with bias) through wasm-lm/kernels
//              against a float64 reference, in every build the runtime validates
//   tokenizer  OPT's tokenizer from vocab.json + merges.txt against transformers' tokenizations
//   logits     each tiny fixture (MODEL_FIXTURES: OPT, LLaMA with grouped-query attention, GPT-2)
//              against transformers' logits, max|Δ| ≤ 1e-4
//   generate   greedy decoding of 32 tokens with the KV cache = transformers' new_tokens
//   threads    the same models on 2 threads (shared memory + workers): bit-identical logits and tokens,
//              or — where the runtime cannot — a clear "wasm-lm: …" error at load

/** The tiny fixtures every runtime runs (test/fixtures/<name>/: config.json, model.safetensors, reference.json). */
export const MODEL_FIXTURES = ["opt-tiny", "llama-tiny", "gpt2-tiny"];

/** A fixture file's binding name in workerd's env (run.mjs, entry-workerd.mjs): "llama-tiny", "CONFIG_JSON" → "LLAMA_TINY_CONFIG_JSON". */
export const workerdBinding = (model, what) => `${model.replace(/\W/g, "_").toUpperCase()}_${what}`;

const EPS = 2 ** -23;
const LOGIT_TOL = 1e-4;

/** Seeded xorshift32 → f32 in [lo, hi). */
function rng(seed) {
  let s = seed >>> 0;
  return (lo, hi) => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return Math.fround(lo + (hi - lo) * ((s >>> 8) / 16777216));
  };
}

function maxAbsDiff(a, b) {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) return Infinity;
    if (d > max) max = d;
  }
  return max;
}

/** For the runners' tables: the worst logits difference over every model and build on one thread, or undefined. */
export function worstLogitsDiff(figures) {
  const diffs = Object.keys(figures)
    .filter((k) => /^model_.*_t1$/.test(k))
    .map((k) => figures[k].logitsMaxAbsDiff);
  return diffs.length ? Math.max(...diffs) : undefined;
}

const exp2 = (v) => (v === 0 ? "0" : v.toExponential(2));

/** linear (wasm-lm/kernels) against float64: worst |y - ref| / (ε·√K·rms(ref)) over two shapes; ≤ 1 passes. */
function kernelCheck(k) {
  const K = 67,
    N = 13;
  let worst = 0,
    maxAbs = 0;
  for (const T of [5, 1]) {
    const r = rng(1234 + T);
    const x = Float32Array.from({ length: T * K }, () => r(-1, 1));
    const w = Float32Array.from({ length: N * K }, () => r(-1, 1));
    const b = Float32Array.from({ length: N }, () => r(-1, 1));
    const y = k.linear(x, w, b, T, K, N);
    const want = new Float64Array(T * N);
    let ss = 0;
    for (let t = 0; t < T; t++) {
      for (let o = 0; o < N; o++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += x[t * K + k] * w[o * K + k];
        want[t * N + o] = s + b[o];
        ss += (s + b[o]) ** 2;
      }
    }
    const tol = EPS * Math.sqrt(K) * Math.sqrt(ss / (T * N));
    for (let i = 0; i < T * N; i++) {
      const d = Math.abs(y[i] - want[i]);
      maxAbs = Math.max(maxAbs, Number.isNaN(d) ? Infinity : d);
      worst = Math.max(worst, Number.isNaN(d) ? Infinity : d / tol);
    }
  }
  return { ok: worst <= 1, maxAbs, worst };
}

/**
 * Run every check. env: { runtime, lib, kernels (the wasm-lm/kernels module), fixture: { models:
 * [{ name, configJson, safetensors, referenceJson }] (MODEL_FIXTURES' files), vocabJson, mergesTxt,
 * tokenizationJson },
 * wasmSource(build, shared) → Promise<{bytes}|{module}|{}>,
 * threads: "expect" (must work) | "error" (must fail with a clear wasm-lm error) | "skip",
 * log(line) }. Returns { ok, failures, figures }.
 */
export async function runChecks(env) {
  const { lib, fixture, log } = env;
  const failures = [];
  const figures = {};
  const fail = (what) => {
    failures.push(what);
    log(`FAIL ${what}`);
  };
  const step = async (name, fn) => {
    try {
      await fn();
    } catch (e) {
      fail(`${name}: threw ${e && e.stack ? e.stack.split("\n").slice(0, 3).join(" | ") : e}`);
    }
  };

  const features = lib.detectFeatures();
  const builds = features.relaxedSimd ? ["simd", "relaxed"] : ["simd"];
  figures.features = features;
  figures.builds = builds;
  log(
    `features: simd ${features.simd}, relaxed-simd ${features.relaxedSimd}, shared memory ${features.threads}; ` +
      `builds validated: ${builds.join(", ")}`,
  );

  // (a) kernel check in every build this runtime validates.
  for (const build of builds) {
    await step(`kernel ${build}`, async () => {
      if (!env.kernels) throw new Error("env.kernels missing: hand in the wasm-lm/kernels module");
      const k = await env.kernels.loadKernels({ build, ...(await env.wasmSource(build, false)) });
      if (k.build !== build) fail(`kernel ${build}: loaded the ${k.build} build`);
      const r = kernelCheck(k);
      figures[`kernel_${build}`] = { maxAbs: r.maxAbs, tolRatio: r.worst };
      const line = `kernel linear (${build}): max|Δ| ${exp2(r.maxAbs)} vs float64, ${r.worst.toFixed(3)} × tol (ε·√K·rms)`;
      if (r.ok) log(`ok   ${line}`);
      else fail(line);
    });
  }

  // Tokenizer (platform-neutral: file contents in, ids out).
  await step("tokenizer", async () => {
    const tok = lib.Tokenizer.fromFiles({ vocabJson: fixture.vocabJson, mergesTxt: fixture.mergesTxt });
    const cases = JSON.parse(fixture.tokenizationJson).cases;
    let bad = 0;
    for (const c of cases) {
      const ids = tok.encode(c.text);
      if (JSON.stringify(ids) !== JSON.stringify(c.ids) || tok.decode(c.ids_no_special) !== c.decoded) bad++;
    }
    const line = `tokenizer: ${cases.length - bad}/${cases.length} transformers tokenizations`;
    if (bad === 0) log(`ok   ${line}`);
    else fail(line);
  });

  // (b) logits and (c) greedy generation of every fixture, in every build on one thread.
  const names = fixture.models.map((m) => m.name);
  if (JSON.stringify(names) !== JSON.stringify(MODEL_FIXTURES)) fail(`fixtures: got [${names}], expected [${MODEL_FIXTURES}]`);
  figures.models = names;
  const runModel = async (m, build, threads) => {
    const ref = JSON.parse(m.referenceJson);
    const config = lib.parseModelConfig(m.configJson, `${m.name}/config.json`);
    const model = await lib.DecoderModel.load(config, lib.openSafetensors(m.safetensors, `${m.name}/model.safetensors`), {
      build,
      threads,
      label: m.name,
      ...(await env.wasmSource(build, threads > 1)),
    });
    try {
      const V = model.dims.V;
      const r = model.forward([ref.input_ids]);
      const logitsDiff = maxAbsDiff(r.logits, ref.logits.flat());
      const am = ref.input_ids.map((_, t) => lib.argmax(r.logits, t * V, (t + 1) * V));
      const g = await lib.generate(model, undefined, ref.input_ids, { maxNewTokens: 32, ignoreEos: true });
      const same = g.new_tokens.filter((id, i) => id === ref.generation.new_tokens[i]).length;
      return {
        model: { build: model.build, threads: model.threads, family: model.dims.family },
        logits: r.logits,
        logitsDiff,
        argmaxOk: JSON.stringify(am) === JSON.stringify(ref.argmax),
        tokens: g.new_tokens,
        same,
      };
    } finally {
      model.dispose();
    }
  };
  const report = (label, r) => {
    const genOk = r.same === 32 && r.tokens.length === 32;
    const line1 = `logits ${label}: max|Δ| ${exp2(r.logitsDiff)} (≤ ${LOGIT_TOL}), argmax ${r.argmaxOk ? "=" : "≠"} transformers`;
    const line2 = `generate ${label}: ${r.same}/32 greedy tokens = transformers`;
    if (r.logitsDiff <= LOGIT_TOL && r.argmaxOk) log(`ok   ${line1}`);
    else fail(line1);
    if (genOk) log(`ok   ${line2}`);
    else fail(`${line2}: got [${r.tokens.join(",")}]`);
  };
  const oneThread = {};
  for (const m of fixture.models) {
    for (const build of builds) {
      await step(`model ${m.name} ${build} 1 thread`, async () => {
        const r = await runModel(m, build, 1);
        if (r.model.build !== build || r.model.threads !== 1)
          fail(`model ${m.name} ${build}: loaded ${r.model.build} on ${r.model.threads} threads`);
        oneThread[`${m.name} ${build}`] = r;
        figures[`model_${m.name}_${build}_t1`] = { logitsMaxAbsDiff: r.logitsDiff, tokensMatched: r.same };
        report(`${m.name} (${r.model.family}, ${build}, 1 thread)`, r);
      });
    }
  }

  // Threads: 2 on the best build, where the runtime has shared memory and workers.
  const best = builds[builds.length - 1];
  if (env.threads === "skip") {
    log(`threads: not tried here (${env.threadsNote ?? "see the runner"})`);
    figures.threads = "skipped";
  } else {
    const all = [];
    for (const m of fixture.models) {
      let r = null,
        err = null;
      try {
        r = await runModel(m, best, 2);
      } catch (e) {
        err = e;
      }
      if (r) {
        const one = oneThread[`${m.name} ${best}`];
        const identical = one ? maxAbsDiff(r.logits, one.logits) === 0 : false;
        all.push({ works: true, threads: r.model.threads, bitIdentical: identical });
        if (r.model.threads !== 2) fail(`threads ${m.name}: asked 2, model runs on ${r.model.threads}`);
        report(`${m.name} (${r.model.family}, ${best}, 2 threads)`, r);
        const line = `threads ${m.name}: 2 threads give ${identical ? "bit-identical" : "DIFFERENT"} logits to 1 thread`;
        if (identical) log(`ok   ${line}`);
        else fail(line);
        if (env.threads === "error")
          log(`note threads ${m.name}: expected a clear error here, but threads worked: update the README table`);
      } else {
        const msg = String((err && err.message) || err);
        all.push({ works: false, error: msg });
        if (env.threads === "expect") fail(`threads ${m.name}: 2 threads failed: ${msg}`);
        else if (!msg.startsWith("wasm-lm:")) fail(`threads ${m.name}: 2 threads failed without a clear wasm-lm error: ${msg}`);
        else log(`ok   threads ${m.name}: unavailable, with a clear error: "${msg}"`);
      }
    }
    // One summary for the runners' tables: works only if it worked for every model.
    figures.threads = all.every((t) => t.works)
      ? { works: true, threads: Math.min(...all.map((t) => t.threads)), bitIdentical: all.every((t) => t.bitIdentical) }
      : { works: false, error: all.find((t) => !t.works).error };
  }
  return { ok: failures.length === 0, failures, figures };
}
