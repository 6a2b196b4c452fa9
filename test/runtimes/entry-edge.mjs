// The edge check's Worker (see edge.mjs): OPT-125M or SmolLM2-135M inside workerd, its weights left
// in storage and streamed a layer at a time (loadModelFromUrl with stream). The checkpoint is an int8
// safetensors file with its tokenizer (wasm-lm quantize's output directory) on an HTTP server that
// honours Range — the stand-in for R2, a static-asset host or the Hugging Face hub; each decoder
// layer is one range request, the next fetched while the current one runs; the lm_head (the tied
// token embedding) is read in chunks through the layer's slot, and each token's embedding row on its
// own. Only the position table (OPT), one layer slot, the KV cache and the scratch live in
// WebAssembly memory (with RESIDENT_EMBEDDINGS=1 the int8 embedding too: 37–41 MB more).
//
// MODE "empty" imports the same bundle and returns at once: the process's own memory, subtracted
// from the model run's to get the isolate's. MODE "tokenizer" only loads the tokenizer, for its
// share. Run by `workerd test`, which calls test() below.
import * as lib from "wasm-lm";
import simd from "./wasm-lm.simd.wasm";

export default {
  async test(_controller, env) {
    const log = (line) => console.log(`[workerd-edge] ${line}`);
    // Both modes stay up a moment at the end, so the memory poll (every 5 ms) sees the final peak.
    const linger = () => new Promise((r) => setTimeout(r, 250));
    if (env.MODE === "empty") {
      await linger();
      console.log(`RESULT ${JSON.stringify({ mode: "empty", ok: true })}`);
      return;
    }
    const base = env.BASE_URL;
    if (env.MODE === "tokenizer") {
      // Only what loadModelFromUrl does for the tokenizer: its share of the isolate's memory.
      const tokenizer = await lib.openTokenizer(lib.urlFiles(base), base);
      await linger();
      console.log(`RESULT ${JSON.stringify({ mode: "tokenizer", ok: tokenizer?.vocabSize === 50265 })}`);
      return;
    }
    const t0 = Date.now();
    // The library's URL loader: config.json and the tokenizer files fetched, the checkpoint read by
    // ranges as passes need it (stream), nothing of it held but one layer (and, unless
    // RESIDENT_EMBEDDINGS=1, not the embedding either).
    const { model, tokenizer } = await lib.loadModelFromUrl(base, {
      stream: true,
      residentEmbeddings: env.RESIDENT_EMBEDDINGS === "1",
      module: simd,
      build: "simd",
      threads: 1,
    });
    const loadMs = Date.now() - t0;
    log(
      `loaded in ${loadMs} ms: ${model.dtype} layers streamed, embedding ${model.weights.embedTokens.dtype} ` +
        `${model.streamsEmbeddings ? "streamed" : "resident"}, ` +
        `wasm memory ${(model.wasm.memory.buffer.byteLength / 2 ** 20).toFixed(1)} MiB`,
    );
    if (!tokenizer) throw new Error(`${base}: no tokenizer files`);
    const maxNewTokens = Number(env.NEW_TOKENS);
    const tokens = [];
    const it = lib.streamGenerate(model, tokenizer, env.PROMPT, { maxNewTokens, ignoreEos: true });
    let r;
    while (!(r = await it.next()).done) tokens.push(r.value.id);
    const g = r.value;
    log(
      `generated ${tokens.length} tokens: prefill ${g.timings.prefill_ms.toFixed(0)} ms, ` +
        `${g.timings.decode_ms_per_token.toFixed(0)} ms/token: ${JSON.stringify(g.text)}`,
    );
    await linger();
    console.log(
      `RESULT ${JSON.stringify({
        mode: "model",
        ok: true,
        family: model.dims.family,
        layerDType: model.dtype,
        tokens,
        text: g.text,
        loadMs,
        timings: g.timings,
        wasmBytes: model.wasm.memory.buffer.byteLength,
        arenaUsed: model.arena.used,
      })}`,
    );
  },
};
