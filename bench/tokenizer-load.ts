// npx tsx bench/tokenizer-load.ts [DIR] [--runs N]
//
// What loading a tokenizer costs: wall time, and heap / RSS after load, each in a fresh Node
// process (a Cloudflare Worker has 128 MB for everything). Two contenders on the same directory
// (default: the GPT-2 fixture, which has both formats):
//   tokenizer.json  → @huggingface/tokenizers (src/tokenizer/tokenizer-json.ts)
//   vocab + merges  → the hand-written slow GPT-2 tokenizer (src/tokenizer/gpt2-slow.ts)
// Each run: GC, baseline, read the files + build, time it, one encode (correctness: the
// contenders must agree), GC twice, then heapUsed / RSS / peak RSS. Medians over the runs.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const MB = 2 ** 20;

interface Sample {
  loadMs: number;
  heapMB: number;
  heapDeltaMB: number;
  rssMB: number;
  rssDeltaMB: number;
  peakRssMB: number;
  ids: number[];
}

async function child(dir: string, kind: string): Promise<void> {
  const { Tokenizer } = await import("../src/tokenizer/index.js");
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with --expose-gc");
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  gc();
  const before = process.memoryUsage();
  const t0 = performance.now();
  const config = read("tokenizer_config.json");
  const tok =
    kind === "tokenizer.json"
      ? Tokenizer.fromFiles({ tokenizerJson: read("tokenizer.json"), tokenizerConfigJson: config })
      : Tokenizer.fromFiles({ vocabJson: read("vocab.json"), mergesTxt: read("merges.txt"), tokenizerConfigJson: config });
  const loadMs = performance.now() - t0;
  const ids = tok.encode("Hello world! Привет 😀", { addSpecialTokens: false });
  gc();
  gc();
  const after = process.memoryUsage();
  const sample: Sample = {
    loadMs,
    heapMB: after.heapUsed / MB,
    heapDeltaMB: (after.heapUsed - before.heapUsed) / MB,
    rssMB: after.rss / MB,
    rssDeltaMB: (after.rss - before.rss) / MB,
    peakRssMB: process.resourceUsage().maxRSS / 1024,
    ids,
  };
  process.stdout.write(JSON.stringify(sample) + "\n");
  void tok; // keep it alive until measured
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function parent(dir: string, runs: number): void {
  const kinds = ["tokenizer.json", "vocab + merges"];
  const samples = new Map<string, Sample[]>(kinds.map((k) => [k, []]));
  for (let r = 0; r < runs; r++) {
    for (const kind of kinds) {
      // interleaved, so drift hits both alike
      const out = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", join(HERE, "tokenizer-load.ts"), "--child", dir, kind], {
        encoding: "utf8",
      });
      if (out.status !== 0) throw new Error(`${kind}: ${out.stderr}`);
      samples.get(kind)!.push(JSON.parse(out.stdout) as Sample);
    }
  }
  const [a, b] = kinds.map((k) => samples.get(k)![0].ids);
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`the contenders disagree: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  console.log(`${dir} — median of ${runs} fresh processes (node ${process.version})`);
  console.log("contender        load ms  heap MB (+load)  RSS MB (+load)  peak RSS MB");
  for (const kind of kinds) {
    const s = samples.get(kind)!;
    const m = (f: (x: Sample) => number) => median(s.map(f)).toFixed(1).padStart(6);
    console.log(
      `${kind.padEnd(15)} ${m((x) => x.loadMs)}  ${m((x) => x.heapMB)} (${m((x) => x.heapDeltaMB)})  ${m((x) => x.rssMB)} (${m((x) => x.rssDeltaMB)})  ${m((x) => x.peakRssMB)}`,
    );
  }
}

const args = process.argv.slice(2);
if (args[0] === "--child") {
  await child(args[1], args[2]);
} else {
  const runsAt = args.indexOf("--runs");
  const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 5;
  const dir =
    args.find((a, i) => !a.startsWith("--") && args[i - 1] !== "--runs") ??
    fileURLToPath(new URL("../test/fixtures/gpt2-tokenizer/", import.meta.url));
  parent(dir, runs);
}
