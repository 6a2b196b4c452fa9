// One configuration of `npm run bench`, in its own process so that its peak RSS is its own:
// our model (a dtype, a build, a thread count) or ORT Web on one exported graph, driven by the
// parent (bench/model.ts) over IPC one command at a time, so the parent can interleave the
// configurations' samples. Also the ONNX export (kind "export"), so the exporter's memory is
// nobody's RSS.
//
//   node --expose-gc --import tsx bench/model-worker.ts '<WorkerSpec JSON>'
//
// Nothing heavy is imported before the baseline RSS is taken: the model code and ORT are loaded
// with dynamic imports.
import { closeSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import type { Tensor as OrtTensor } from "onnxruntime-web";
import type { GraphVariant, LmHeadVariant } from "./decoder-onnx.js";
import {
  argmax,
  type ExitInfo,
  machineBusySeconds,
  peakRssMiB,
  promptIds,
  type ReadyInfo,
  type Reply,
  type Request,
  rssMiB,
  type Sample,
  type WorkerSpec,
} from "./model-common.js";

const baselineRssMiB = rssMiB();
const spec = JSON.parse(process.argv[2] ?? "null") as WorkerSpec;
const MiB = 2 ** 20;

/** A model under test: a prefill that resets the cache, and decode steps that extend it. */
interface Runner {
  describe: string;
  weightsMiB: number;
  kvMiB: number;
  threads: number;
  vocab: number;
  /** Fresh prefill of ids (the cache restarts), logits of every row or of the last one. */
  prefill(ids: number[], rows: "all" | "last"): Promise<Float32Array>;
  /** One token on top of the cache: its logits (V). */
  step(id: number): Promise<Float32Array>;
}

async function oursRunner(s: Extract<WorkerSpec, { kind: "ours" }>): Promise<Runner> {
  const { DecoderModel } = await import("../src/models/decoder.js");
  const { syntheticConfig, SyntheticSource } = await import("../src/models/synthetic.js");
  const config = syntheticConfig(s.model);
  const source = new SyntheticSource(config, s.seed);
  // Options the LoadOptions type does not declare are not passed (the parent checked which exist).
  const opts: Record<string, unknown> = { build: s.build };
  if (s.passThreads) opts.threads = s.threads;
  if (s.passDtype) opts.dtype = s.dtype;
  if (s.embedDType) opts.embedDType = s.embedDType;
  const model = await DecoderModel.load(config, source, opts as Parameters<typeof DecoderModel.load>[2]);
  const weightsMiB = model.arena.used / MiB;
  const cache = model.createCache(1, s.maxCtx);
  const kvMiB = model.arena.used / MiB - weightsMiB;
  const threads = (model as { threads?: number }).threads ?? 1;
  if (threads !== s.threads) throw new Error(`asked for ${s.threads} thread(s), the model runs ${threads}`);
  const dtype = (model as { dtype?: string }).dtype ?? "f32";
  if (dtype !== s.dtype) throw new Error(`asked for dtype ${s.dtype}, the model holds ${dtype}`);
  return {
    describe: `wasm-lm ${model.build}, ${s.dtype}${s.embedDType ? ` (embedding ${s.embedDType})` : ""}, ${threads} thread(s)`,
    weightsMiB,
    kvMiB,
    threads,
    vocab: config.vocab_size,
    async prefill(ids, rows) {
      cache.clear();
      return model.forward([ids], { cache, logits: rows }).logits;
    },
    async step(id) {
      return model.forward([[id]], { cache, logits: "last" }).logits;
    },
  };
}

async function peerRunner(s: Extract<WorkerSpec, { kind: "peer" }>): Promise<Runner> {
  const { createSession, describeOrt, initOrt, ort } = await import("./ort.js");
  const { modelDims, syntheticConfig } = await import("../src/models/families/index.js");
  const d = modelDims(syntheticConfig(s.model));
  await initOrt(s.threads);
  // ORT falls back to one thread (with a console warning) where it cannot start workers: say so.
  if ((ort.env.wasm.numThreads ?? 1) !== s.threads) {
    throw new Error(`ORT runs ${ort.env.wasm.numThreads} thread(s), ${s.threads} asked (no multi-threading here)`);
  }
  // As an app would: the .onnx file's bytes, handed to ORT, then dropped.
  let bytes: Uint8Array | null = readFileSync(s.onnxPath);
  const session = await createSession(bytes);
  bytes = null;
  const meta = JSON.parse(readFileSync(s.onnxPath + ".json", "utf8")) as {
    pastNames: string[];
    presentNames: string[];
    pastDims0: number[];
  };
  const i64 = (xs: number[], dims: number[]) => new ort.Tensor("int64", BigInt64Array.from(xs.map(BigInt)), dims);
  const emptyPast = meta.pastNames.map(() => new ort.Tensor("float32", new Float32Array(0), meta.pastDims0));
  let past: OrtTensor[] = emptyPast;
  const run = async (ids: number[], rows: number[]) => {
    const feeds: Record<string, OrtTensor> = { input_ids: i64(ids, [1, ids.length]), logits_index: i64(rows, [rows.length]) };
    meta.pastNames.forEach((n, i) => (feeds[n] = past[i]));
    const out = await session.run(feeds);
    past = meta.presentNames.map((n) => out[n]);
    return out.logits.data as Float32Array;
  };
  const kvBytes = 2 * d.L * d.Hkv * s.maxCtx * d.D * 4;
  return {
    describe: `${describeOrt()}, graph ${s.variant}`,
    weightsMiB: statSync(s.onnxPath).size / MiB,
    kvMiB: kvBytes / MiB,
    threads: ort.env.wasm.numThreads ?? 1,
    vocab: d.V,
    async prefill(ids, rows) {
      past = emptyPast;
      return run(ids, rows === "all" ? ids.map((_, i) => i) : [ids.length - 1]);
    },
    async step(id) {
      return run([id], [0]);
    },
  };
}

async function exportOnnx(s: Extract<WorkerSpec, { kind: "export" }>): Promise<void> {
  const { exportDecoderOnnx } = await import("./decoder-onnx.js");
  const { syntheticConfig, SyntheticSource } = await import("../src/models/synthetic.js");
  const config = syntheticConfig(s.model);
  const ex = exportDecoderOnnx(config, new SyntheticSource(config, s.seed), {
    variant: s.variant as GraphVariant,
    lmHead: s.lmHead as LmHeadVariant,
    label: `synthetic:${s.model}`,
    weights: s.weights,
    q8PerChannel: s.q8PerChannel,
    q4Symmetric: s.q4Symmetric,
    q4AccuracyLevel: s.q4AccuracyLevel,
  });
  writeFileSync(s.onnxPath, ex.bytes);
  writeFileSync(
    s.onnxPath + ".json",
    JSON.stringify({
      pastNames: ex.pastNames,
      presentNames: ex.presentNames,
      pastDims0: ex.pastDims(0),
      ops: ex.ops,
      lmHead: ex.lmHead,
    }),
  );
}

const send = (m: Reply) => new Promise<void>((resolve) => process.send!(m, undefined, {}, () => resolve()));
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

async function main(): Promise<void> {
  if (!process.send) throw new Error("bench/model-worker.ts runs as a child of bench/model.ts (it needs the IPC channel)");
  if (spec.kind === "export") {
    await exportOnnx(spec);
    await send({ type: "exit", info: { peakRssMiB: peakRssMiB(), rssMiB: rssMiB() } });
    process.exit(0);
  }
  const t0 = performance.now();
  const r = spec.kind === "ours" ? await oursRunner(spec) : await peerRunner(spec);
  const ids = promptIds(spec.seed, spec.promptLen, r.vocab);
  gc();
  const info: ReadyInfo = {
    describe: r.describe,
    loadMs: performance.now() - t0,
    baselineRssMiB,
    rssAfterLoadMiB: rssMiB(),
    peakAfterLoadMiB: peakRssMiB(),
    weightsMiB: r.weightsMiB,
    kvMiB: r.kvMiB,
    threads: r.threads,
  };
  await send({ type: "ready", info });

  /** Time fn once, with the CPU time this process got and the CPU time everybody else took meanwhile. */
  const timed = async (fn: () => Promise<number>): Promise<Reply> => {
    gc();
    const busy0 = machineBusySeconds();
    const cpu0 = process.cpuUsage();
    const t = performance.now();
    const divisor = await fn();
    const wall = (performance.now() - t) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const own = (cpu.user + cpu.system) / 1e6;
    const busy1 = machineBusySeconds();
    const sample: Sample = {
      ms: (wall * 1000) / divisor,
      cpu: own / wall,
      others: busy0 === null || busy1 === null ? null : Math.max(0, busy1 - busy0 - own) / wall,
    };
    return { type: "result", sample };
  };

  const handle = async (req: Request): Promise<Reply> => {
    switch (req.cmd) {
      case "parity": {
        // One file, no copy: all rows (T·V), the last row (V), then each decode step (V).
        const file = path.join(spec.tmpDir, `parity-${process.pid}.f32`);
        const fd = openSync(file, "w");
        try {
          const put = (a: Float32Array) => {
            const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
            for (let at = 0; at < b.length;) at += writeSync(fd, b, at);
          };
          put(await r.prefill(ids, "all"));
          put(await r.prefill(ids, "last"));
          for (const id of req.decodeIds) put(await r.step(id));
        } finally {
          closeSync(fd);
        }
        return { type: "result", parityFile: file };
      }
      case "ttft":
        return timed(async () => {
          argmax(await r.prefill(ids, "last"));
          return 1;
        });
      case "prefill":
        return timed(async () => {
          await r.prefill(ids, "all");
          return 1;
        });
      case "decode": {
        const n = req.tokens ?? 64;
        let tok = argmax(await r.prefill(ids, "last"));
        return timed(async () => {
          for (let i = 0; i < n; i++) tok = argmax(await r.step(tok));
          return n;
        });
      }
      case "exit": {
        const exit: ExitInfo = { peakRssMiB: peakRssMiB(), rssMiB: rssMiB() };
        return { type: "exit", info: exit };
      }
    }
  };

  let queue = Promise.resolve();
  process.on("message", (req: Request) => {
    queue = queue.then(async () => {
      let reply: Reply;
      try {
        reply = await handle(req);
      } catch (e) {
        reply = { type: "error", message: (e as Error).stack ?? String(e) };
      }
      await send(reply);
      if (req.cmd === "exit") process.exit(0);
    });
  });
}

main().catch(async (e: unknown) => {
  const message = (e as Error)?.stack ?? String(e);
  if (process.send) await send({ type: "error", message });
  else process.stderr.write(message + "\n");
  process.exit(2);
});
