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

// One model and one engine per isolate, made on first use and shared by its requests: the weights
// stay in storage and each pass reads the layers it needs (each read is a new fetch, made by the
// request whose pass needs it); the engine's steps are run by the requests waiting for tokens, so
// none outlives its request. Two KV-cache slots of up to 256 tokens: two requests decode together,
// more wait in the queue (or get 429 with Retry-After when it is full). Workers scale out by isolates.
/** @type {Promise<(request: Request) => Promise<Response>> | undefined} */
let serving;

async function open(env) {
  const base = env.MODEL_URL;
  const files = urlFiles(base, { cache: false }); // no Cache API in a plain workerd: fetch them
  const configBytes = await files("config.json");
  if (!configBytes) throw new Error(`${base}config.json not found`);
  const config = parseModelConfig(new TextDecoder().decode(configBytes), `${base}config.json`);
  const tokenizer = await openTokenizer(files, base);
  const source = await openRangedCheckpoint(async (file) => httpRangeReader(base + file), base);
  const model = await DecoderModel.load(config, source, {
    residentLayers: false,
    residentEmbeddings: false, // one layer in memory at a time
    module: wasm,
    build: "simd",
    threads: 1, // a Worker has no threads
  });
  const engine = new Engine(model, {
    maxBatch: 2,
    maxQueue: 8,
    ctx: Math.min(256, model.dims.maxPositions),
    decodable: tokenizer?.vocabSize,
  });
  return createHandler({ engine, tokenizer, modelId: env.MODEL_ID || base, eosTokenIds: model.dims.eos, apiKey: env.API_KEY || undefined });
}

export default {
  /**
   * @param {Request} request
   * @param {{ MODEL_URL: string, MODEL_ID?: string, API_KEY?: string }} env
   */
  async fetch(request, env) {
    serving ??= open(env).catch((e) => {
      serving = undefined;
      throw e;
    });
    return (await serving)(request);
  },
};
