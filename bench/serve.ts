// npm run bench:serve [-- --models opt-125m,smollm2-135m] [--clients 1,4,8,16] [--requests 3]
//                        [--max-tokens 32] [--dtype int8] [--threads 1] [--json]
//
// The OpenAI-compatible server under concurrent streaming clients, with continuous batching and
// with it off (the same server, one request decoded at a time), on synthetic models (seeded random
// weights at the real shapes). Each client sends `requests` streamed completions one after the
// other (a 16-token prompt of ids, `max_tokens` new tokens, greedy) to the server on 127.0.0.1.
// Reported per configuration: aggregate decode throughput (tokens received / wall time), time to
// first token (p50 / p99 over requests) and per-token latency (the gaps after the first token,
// p50 / p99), and the mean batch the engine ran. Decode is memory-bound, so a step of B rows costs
// little more than one row: throughput should grow with the batch until compute takes over.
import { Command, InvalidArgumentError } from "commander";
import { DecoderModel } from "../src/models/decoder.js";
import { syntheticConfig } from "../src/models/families/index.js";
import { SyntheticSource } from "../src/models/synthetic.js";
import { Engine } from "../src/server/engine.js";
import { createHandler } from "../src/server/handler.js";
import { serveNode } from "../src/server/node.js";
import { machineInfo } from "./measure.js";

const list = (v: string) =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
const ints = (v: string) =>
  list(v).map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected positive integers, comma-separated");
    return n;
  });
const int = (v: string) => ints(v)[0];

const o = new Command("bench:serve")
  .option("--models <list>", "synthetic presets", list, ["opt-125m", "smollm2-135m"])
  .option("--clients <list>", "concurrent clients", ints, [1, 4, 8, 16])
  .option("--requests <n>", "requests per client", int, 3)
  .option("--max-tokens <n>", "new tokens per request", int, 32)
  .option("--dtype <dtype>", "weights: f32, f16, int8", "int8")
  .option("--threads <n>", "threads for the kernels", int, 1)
  .option("--json", "print the results as JSON")
  .parse()
  .opts();

const pct = (xs: number[], p: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

interface RequestTiming {
  ttft: number;
  gaps: number[];
  tokens: number;
}

/** One streamed completion: read the SSE stream, time each chunk. */
async function streamOne(url: string, prompt: number[], maxTokens: number): Promise<RequestTiming> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, stream: true, return_token_ids: true }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let last = t0;
  let ttft = NaN;
  const gaps: number[] = [];
  let tokens = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let i: number;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const j = JSON.parse(data);
      const ch = j.choices?.[0];
      const n = ch && ch.finish_reason === null ? (ch.token_ids?.length ?? 0) : 0; // the last chunk repeats every id
      if (!n) continue;
      const t = performance.now();
      if (Number.isNaN(ttft)) ttft = t - t0;
      else gaps.push((t - last) / n);
      last = t;
      tokens += n;
    }
  }
  return { ttft, gaps, tokens };
}

interface Row {
  model: string;
  batching: boolean;
  clients: number;
  requests: number;
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
  ttftP50: number;
  ttftP99: number;
  tokenP50: number;
  tokenP99: number;
  meanBatch: number;
}

async function run(preset: string): Promise<Row[]> {
  const config = syntheticConfig(preset);
  const model = await DecoderModel.load(config, new SyntheticSource(config, 0), { dtype: o.dtype, threads: o.threads });
  const rows: Row[] = [];
  const V = model.dims.V;
  for (const batching of [true, false]) {
    const maxBatch = Math.max(...o.clients);
    const engine = new Engine(model, { maxBatch, batching, ctx: 16 + o.maxTokens + 1, maxQueue: 64 });
    const handler = createHandler({ engine, tokenizer: null, modelId: preset, eosTokenIds: [] });
    const server = await serveNode(handler, { host: "127.0.0.1", port: 0 });
    try {
      // Warm-up: one request (the first pass touches every weight page).
      await streamOne(
        server.url,
        Array.from({ length: 16 }, (_, i) => (i * 97 + 5) % V),
        4,
      );
      for (const clients of o.clients) {
        const before = engine.stats;
        const t0 = performance.now();
        const results = await Promise.all(
          Array.from({ length: clients }, async (_, c) => {
            const out: RequestTiming[] = [];
            for (let r = 0; r < o.requests; r++) {
              const prompt = Array.from({ length: 16 }, (_, i) => (c * 131 + r * 17 + i * 97 + 5) % V);
              out.push(await streamOne(server.url, prompt, o.maxTokens));
            }
            return out;
          }),
        );
        const seconds = (performance.now() - t0) / 1000;
        const all = results.flat();
        const tokens = all.reduce((a, r) => a + r.tokens, 0);
        const after = engine.stats;
        const row: Row = {
          model: preset,
          batching,
          clients,
          requests: all.length,
          tokens,
          seconds,
          tokensPerSecond: tokens / seconds,
          ttftP50: pct(
            all.map((r) => r.ttft),
            50,
          ),
          ttftP99: pct(
            all.map((r) => r.ttft),
            99,
          ),
          tokenP50: pct(
            all.flatMap((r) => r.gaps),
            50,
          ),
          tokenP99: pct(
            all.flatMap((r) => r.gaps),
            99,
          ),
          meanBatch: (after.rows - before.rows) / Math.max(1, after.steps - before.steps),
        };
        rows.push(row);
        if (!o.json) {
          console.log(
            `${preset.padEnd(13)} ${batching ? "batching" : "one at a time"} ${String(clients).padStart(3)} clients: ` +
              `${row.tokensPerSecond.toFixed(1).padStart(7)} tokens/s, TTFT p50 ${row.ttftP50.toFixed(0)} / p99 ${row.ttftP99.toFixed(0)} ms, ` +
              `per token p50 ${row.tokenP50.toFixed(1)} / p99 ${row.tokenP99.toFixed(1)} ms, mean batch ${row.meanBatch.toFixed(2)}`,
          );
        }
      }
    } finally {
      await server.close();
    }
  }
  model.dispose();
  return rows;
}

const info = machineInfo();
if (!o.json)
  console.log(
    `bench:serve — ${o.dtype}, ${o.threads} thread(s), ${o.requests} requests × ${o.maxTokens} tokens per client; ${JSON.stringify(info)}`,
  );
const all: Row[] = [];
for (const m of o.models) all.push(...(await run(m)));
if (o.json) {
  console.log(JSON.stringify({ machine: info, options: o, rows: all }, null, 2));
} else {
  console.log(
    "\n| model | clients | batching tokens/s | one-at-a-time tokens/s | ratio | TTFT p50/p99 ms (batching) | per token p50/p99 ms (batching) | mean batch |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const r of all.filter((x) => x.batching)) {
    const off = all.find((x) => !x.batching && x.model === r.model && x.clients === r.clients)!;
    const one = all.find((x) => x.batching && x.model === r.model && x.clients === 1);
    console.log(
      `| ${r.model} | ${r.clients} | ${r.tokensPerSecond.toFixed(1)} | ${off.tokensPerSecond.toFixed(1)} | ` +
        `${(r.tokensPerSecond / off.tokensPerSecond).toFixed(2)}× (${one ? (r.tokensPerSecond / one.tokensPerSecond).toFixed(2) : "–"}× one stream) | ` +
        `${r.ttftP50.toFixed(0)} / ${r.ttftP99.toFixed(0)} | ${r.tokenP50.toFixed(1)} / ${r.tokenP99.toFixed(1)} | ${r.meanBatch.toFixed(2)} |`,
    );
  }
}
