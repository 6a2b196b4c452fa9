// An OpenAI-compatible server in Deno: wasm-lm/server's fetch handler is Deno.serve's handler as is.
//
//   deno add npm:wasm-lm        (or run it inside a Node project that has wasm-lm in node_modules)
//   deno run --allow-read --allow-net --allow-env serve.ts                       # synthetic:opt-125m (random weights: noise)
//   deno run --allow-read --allow-net --allow-env --allow-write serve.ts facebook/opt-125m 8080   # hub ids are downloaded into the cache
//
// Arguments: [model] [port] (0 picks a free port). Then point any OpenAI client at http://127.0.0.1:<port>/v1.
import { createHandler, Engine } from "wasm-lm/server";
import { loadModel } from "wasm-lm/node";

const [spec = "synthetic:opt-125m", port = "8080"] = Deno.args;
const { model, tokenizer } = await loadModel(spec);
const engine = new Engine(model, { maxBatch: 4, ctx: Math.min(1024, model.dims.maxPositions), decodable: tokenizer?.vocabSize });
const handler = createHandler({ engine, tokenizer, modelId: spec, eosTokenIds: model.dims.eos });

const server = Deno.serve(
  {
    hostname: "127.0.0.1",
    port: Number(port),
    onListen: ({ port }) => {
      console.log(`serving ${spec} at http://127.0.0.1:${port}/v1`);
      if (spec.startsWith("synthetic:")) console.log(`note: ${spec} has random weights: its text is noise`);
    },
  },
  handler,
);

// Ctrl-C: finish the requests in flight, then exit.
Deno.addSignalListener("SIGINT", async () => {
  await Promise.all([engine.drain(), server.shutdown()]);
  model.dispose();
  Deno.exit(0);
});
