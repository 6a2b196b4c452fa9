// Leak check (not part of npm test: it takes a few minutes). Runs many generate calls on one
// model and prints the arena's used bytes and high-water mark and the process RSS / JS heap at
// the start, after 100 calls and at the end. They must stay flat: arena.used back to its start,
// highWater no higher at the end than after 100 calls, RSS and heap within a small margin of
// where they were after 100 calls. Exits 1 when they do not.
//
//   node --expose-gc --import tsx scripts/leak-check.ts                 # 1000 tiny + 300 OPT-125M
//   node --expose-gc --import tsx scripts/leak-check.ts --tiny 200 --opt125m 0 --threads 2
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { openSafetensors } from "../src/formats/safetensors.js";
import { parseOptConfig } from "../src/models/opt/config.js";
import { OptModel } from "../src/models/opt/model.js";
import { SyntheticSource, syntheticConfig } from "../src/models/opt/synthetic.js";
import { generate, streamGenerate, type TextCodec } from "../src/generate/index.js";
import { loadTokenizer } from "../src/tokenizer/node.js";

const { values } = parseArgs({
  options: {
    tiny: { type: "string", default: "1000" },
    opt125m: { type: "string", default: "300" },
    threads: { type: "string", default: "1" },
  },
});
const threads = Number(values.threads);
const FIXTURE = fileURLToPath(new URL("../test/fixtures/opt-tiny/", import.meta.url));
const TOKENIZER = fileURLToPath(new URL("../tokenizers/opt/", import.meta.url));
const gc = (globalThis as { gc?: () => void }).gc;
const MiB = (n: number) => (n / 2 ** 20).toFixed(1);

interface Sample {
  label: string;
  calls: number;
  used: number;
  high: number;
  capacity: number;
  rss: number;
  heap: number;
  ms: number;
}

function sample(label: string, model: OptModel, calls: number, t0: number): Sample {
  gc?.();
  const m = process.memoryUsage();
  return {
    label,
    calls,
    used: model.arena.used,
    high: model.arena.highWater,
    capacity: model.arena.capacity,
    rss: m.rss,
    heap: m.heapUsed,
    ms: performance.now() - t0,
  };
}

/** One call of the mix: greedy, sampled, streamed and broken off, aborted, or failing. */
async function oneCall(model: OptModel, codec: TextCodec, prompt: string, i: number, maxNew: number): Promise<void> {
  switch (i % 5) {
    case 0:
      await generate(model, codec, prompt, { maxNewTokens: maxNew, ignoreEos: true });
      return;
    case 1:
      await generate(model, codec, prompt, { maxNewTokens: maxNew, temperature: 0.8, topP: 0.95, seed: i });
      return;
    case 2: {
      let n = 0;
      for await (const _ of streamGenerate(model, codec, prompt, { maxNewTokens: maxNew, ignoreEos: true })) if (++n === 3) break;
      return;
    }
    case 3: {
      const ac = new AbortController();
      let n = 0;
      try {
        for await (const _ of streamGenerate(model, codec, prompt, { maxNewTokens: maxNew, ignoreEos: true, signal: ac.signal })) {
          if (++n === 2) ac.abort();
        }
      } catch {
        /* aborted, as intended */
      }
      return;
    }
    default:
      try {
        await generate(model, codec, [2, model.d.V + i]);
      } catch {
        /* a bad id, as intended */
      }
  }
}

async function run(name: string, model: OptModel, codec: TextCodec, prompt: string, calls: number, maxNew: number): Promise<boolean> {
  const t0 = performance.now();
  const samples = [sample("start", model, 0, t0)];
  for (let i = 0; i < calls; i++) {
    await oneCall(model, codec, prompt, i, maxNew);
    if (i + 1 === 100 && calls > 100) samples.push(sample("after 100", model, 100, t0));
  }
  samples.push(sample("end", model, calls, t0));
  console.log(
    `\n${name}: ${calls} calls (greedy, sampled, streamed and broken off, aborted, failing: 1/5 each), ` +
      `${model.threads} thread(s), ${gc ? "gc before each sample" : "no --expose-gc"}`,
  );
  console.log("  when        calls   arena used (B)  high-water (B)    capacity       RSS       JS heap    elapsed");
  for (const s of samples) {
    console.log(
      `  ${s.label.padEnd(10)} ${String(s.calls).padStart(6)}  ${String(s.used).padStart(14)}  ${String(s.high).padStart(14)} ` +
        `${MiB(s.capacity).padStart(8)} MiB ${MiB(s.rss).padStart(7)} MiB ${MiB(s.heap).padStart(7)} MiB ${(s.ms / 1000).toFixed(1).padStart(7)} s`,
    );
  }
  const [start, mid, end] = [samples[0], samples[samples.length > 2 ? 1 : 0], samples[samples.length - 1]];
  const problems: string[] = [];
  if (end.used !== start.used) problems.push(`arena.used ${start.used} → ${end.used}`);
  if (samples.length > 2 && end.high !== mid.high) problems.push(`highWater grew after 100 calls: ${mid.high} → ${end.high}`);
  if (samples.length > 2 && end.capacity !== mid.capacity) problems.push("wasm memory grew after 100 calls");
  // RSS moves with the allocator and GC timing; a leak of even a few KB per call shows over 900 calls.
  if (samples.length > 2 && end.rss - mid.rss > 48 * 2 ** 20) problems.push(`RSS grew ${MiB(end.rss - mid.rss)} MiB after 100 calls`);
  if (samples.length > 2 && end.heap - mid.heap > 16 * 2 ** 20)
    problems.push(`JS heap grew ${MiB(end.heap - mid.heap)} MiB after 100 calls`);
  console.log(problems.length ? `  NOT FLAT: ${problems.join("; ")}` : "  flat: arena back to its start, no growth after 100 calls");
  return problems.length === 0;
}

const tok = loadTokenizer(TOKENIZER);
let ok = true;

const tinyCalls = Number(values.tiny);
if (tinyCalls > 0) {
  const config = parseOptConfig(readFileSync(FIXTURE + "config.json", "utf8"));
  const model = await OptModel.load(config, openSafetensors(new Uint8Array(readFileSync(FIXTURE + "model.safetensors"))), { threads });
  // The fixture's vocabulary is OPT's first 512 ids: " the" = 5, "," = 6, " world" = 232.
  const codec: TextCodec = { encode: (t) => tok.encode(t), decode: (ids) => tok.decode(ids), vocabSize: config.vocab_size };
  ok = (await run("tiny fixture (vocab 512, 2 layers)", model, codec, " the world, the world", tinyCalls, 16)) && ok;
  model.dispose();
}

const bigCalls = Number(values.opt125m);
if (bigCalls > 0) {
  const config = syntheticConfig("opt-125m");
  const model = await OptModel.load(config, new SyntheticSource(config, 0), { threads });
  ok = (await run("synthetic OPT-125M", model, tok, "Hello, my name is", bigCalls, 8)) && ok;
  model.dispose();
}
process.exit(ok ? 0 : 1);
