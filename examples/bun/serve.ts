// An OpenAI-compatible server in Bun: wasm-lm/server's fetch handler is Bun.serve's fetch as is.
//
//   bun add wasm-lm
//   bun serve.ts                              # synthetic:opt-125m (random weights: noise) on http://127.0.0.1:8080/v1
//   bun serve.ts facebook/opt-125m 8080       # [model] [port]; port 0 picks a free one
//
// Then point any OpenAI client at http://127.0.0.1:<port>/v1.
import { createHandler, Engine } from "wasm-lm/server";
import { loadModel } from "wasm-lm/node";

const [spec = "synthetic:opt-125m", port = "8080"] = process.argv.slice(2);
const { model, tokenizer } = await loadModel(spec);
const engine = new Engine(model, { maxBatch: 4, ctx: Math.min(1024, model.dims.maxPositions), decodable: tokenizer?.vocabSize });
const handler = createHandler({ engine, tokenizer, modelId: spec, eosTokenIds: model.dims.eos });

// idleTimeout: 0 — a long generation may send nothing for a while (Bun closes idle connections after 10 s by default).
const server = Bun.serve({ hostname: "127.0.0.1", port: Number(port), fetch: handler, idleTimeout: 0 });
console.log(`serving ${spec} at http://127.0.0.1:${server.port}/v1`);
if (spec.startsWith("synthetic:")) console.log(`note: ${spec} has random weights: its text is noise`);

// Ctrl-C: finish the requests in flight, then exit.
process.once("SIGINT", async () => {
  await Promise.all([engine.drain(), server.stop()]);
  model.dispose();
  process.exit(0);
});
