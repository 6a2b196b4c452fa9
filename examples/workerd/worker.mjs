// An OpenAI-compatible API in a Cloudflare Worker (or a local workerd): wasm-lm/server's fetch
// handler over a model whose weights stay in storage — any URL that answers HTTP Range requests
// (R2 behind a custom domain, a static host, the Hugging Face hub) — read a layer at a time as each
// pass needs it, so that a model larger than the isolate's 128 MB runs inside it.
//
// MODEL_URL (a binding: config.capnp, or `vars` in wrangler.toml) is the model directory in the
// Hugging Face layout, ending in "/": config.json, model.safetensors and the tokenizer files, e.g.
// what `npx wasm-lm quantize --model facebook/opt-125m --embed-dtype int8 --out DIR` writes.
// Build: `node build.mjs` (esbuild), run: `MODEL_URL=… npx workerd serve config.capnp` (README.md).
import { DecoderModel, httpRangeReader, openRangedCheckpoint, openTokenizer, parseModelConfig, urlFiles } from "wasm-lm";
import { createHandler, Engine } from "wasm-lm/server";
// Workers compile WebAssembly at deploy time only: import the .wasm as a module.
import wasm from "wasm-lm/build/wasm-lm.simd.wasm";

// The Workers runtime ties every fetch (and every promise) to the request that started it: a
// checkpoint reader, a model streaming from it, or the engine's decoding loop made during one
// request cannot be used by the next. So the config and the tokenizer (plain data, read once) are
// shared by the isolate's requests, and each request streams the weights through a model and an
// engine of its own, one request at a time (each holds a layer, a KV cache and scratch, within
// 128 MB); another request meanwhile gets 429 with Retry-After, which the OpenAI clients retry.
// Workers scale out by isolates.
/** @type {Promise<{ config: import("wasm-lm").ModelConfig, tokenizer: import("wasm-lm").Tokenizer | null }> | undefined} */
let shared;
let busy = false;

async function openShared(base) {
  const files = urlFiles(base, { cache: false }); // no Cache API in a plain workerd: fetch them
  const config = await files("config.json");
  if (!config) throw new Error(`${base}config.json not found`);
  return { config: parseModelConfig(new TextDecoder().decode(config), `${base}config.json`), tokenizer: await openTokenizer(files, base) };
}

/** A model streaming its layers (and embedding, and lm_head) from base by Range requests. */
async function openModel(base, config) {
  const source = await openRangedCheckpoint(async (file) => httpRangeReader(base + file), base);
  return DecoderModel.load(config, source, {
    residentLayers: false, residentEmbeddings: false, // one layer in memory at a time
    module: wasm, build: "simd", threads: 1,          // a Worker has no threads
  });
}

export default {
  /**
   * @param {Request} request
   * @param {{ MODEL_URL: string, MODEL_ID?: string, API_KEY?: string }} env
   * @param {{ waitUntil(p: Promise<unknown>): void }} ctx
   */
  async fetch(request, env, ctx) {
    if (busy) {
      return Response.json({ error: { message: "Busy with another request: retry.", type: "server_error", param: null, code: "busy" } },
        { status: 429, headers: { "retry-after": "1" } });
    }
    busy = true;
    let model;
    try {
      shared ??= openShared(env.MODEL_URL).catch((e) => { shared = undefined; throw e; });
      const { config, tokenizer } = await shared;
      model = await openModel(env.MODEL_URL, config);
      // One KV-cache slot of up to 256 tokens.
      const engine = new Engine(model, { maxBatch: 1, ctx: Math.min(256, model.dims.maxPositions), decodable: tokenizer?.vocabSize });
      const handler = createHandler({ engine, tokenizer, modelId: env.MODEL_ID || env.MODEL_URL, eosTokenIds: model.dims.eos, apiKey: env.API_KEY || undefined });
      const response = await handler(request);
      // Pass the body through (a stream for `stream: true`); once it is sent, the next request may come.
      const { readable, writable } = new TransformStream();
      const sent = response.body ? response.body.pipeTo(writable) : writable.close();
      const m = model;
      ctx.waitUntil(sent.catch(() => {}).then(() => engine.drain()).finally(() => { m.dispose(); busy = false; }));
      model = undefined;
      return new Response(response.body ? readable : null, response);
    } catch (e) {
      model?.dispose();
      busy = false;
      throw e;
    }
  },
};
