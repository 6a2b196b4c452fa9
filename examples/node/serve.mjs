// An OpenAI-compatible server in Node: wasm-lm/server's fetch handler on node:http.
//
//   npm install wasm-lm
//   node serve.mjs                              # synthetic:opt-125m (random weights: noise) on http://127.0.0.1:8080/v1
//   node serve.mjs facebook/opt-125m 8080       # [model] [port]; port 0 picks a free one
//
// Then any OpenAI client, e.g. with `npm install openai`:
//   const client = new OpenAI({ baseURL: "http://127.0.0.1:8080/v1", apiKey: "unused" });
//   const r = await client.completions.create({ model: "synthetic:opt-125m", prompt: "Hello", max_tokens: 16, temperature: 0 });
// or curl http://127.0.0.1:8080/v1/completions -H 'content-type: application/json' -d '{"prompt": "Hello", "max_tokens": 16}'
//
// (`npx wasm-lm serve --model … --port …` is the same server, with more options, from the command line.)
import { createServer } from "node:http";
import { Readable, pipeline } from "node:stream";
import { createHandler, Engine } from "wasm-lm/server";
import { loadModel } from "wasm-lm/node";

const [spec = "synthetic:opt-125m", port = "8080"] = process.argv.slice(2);
const { model, tokenizer } = await loadModel(spec);

// Continuous batching: up to 4 requests decode together, each in a KV-cache slot of up to 1024 tokens.
const engine = new Engine(model, { maxBatch: 4, ctx: Math.min(1024, model.dims.maxPositions), decodable: tokenizer?.vocabSize });
const handler = createHandler({ engine, tokenizer, modelId: spec, eosTokenIds: model.dims.eos });

// node:http ⇄ fetch: the handler takes a Request and returns a Response (streamed for `stream: true`).
const server = createServer(async (req, res) => {
  // A client that goes away cancels its generation: before the response starts, through the
  // request's signal; once it streams, pipeline cancels the body (which stops the generation).
  const gone = new AbortController();
  const onClose = () => gone.abort();
  res.once("close", onClose);
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  const request = new Request(`http://${req.headers.host ?? "localhost"}${req.url}`, {
    method: req.method,
    headers: req.headers,
    signal: gone.signal,
    ...(hasBody ? { body: Readable.toWeb(req), duplex: "half" } : {}),
  });
  const response = await handler(request);
  res.off("close", onClose);
  res.writeHead(response.status, Object.fromEntries(response.headers));
  if (response.body) pipeline(Readable.fromWeb(response.body), res, () => {});
  else res.end();
});

server.listen(Number(port), "127.0.0.1", () => {
  console.log(`serving ${spec} at http://127.0.0.1:${server.address().port}/v1`);
  if (spec.startsWith("synthetic:")) console.log(`note: ${spec} has random weights: its text is noise`);
});

// Ctrl-C: stop accepting, finish the requests in flight, exit.
const stop = async () => {
  server.close();
  server.closeIdleConnections();
  await engine.drain();
  model.dispose();
  process.exit(0);
};
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
