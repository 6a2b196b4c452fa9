// Timing: interleaved rounds of samples, each sample the mean of a calibrated batch of calls.
//
// The machine is shared and noisy, so contenders (our builds and the peer) are timed in the same
// rounds, alternating their order, and only medians (with the min) are compared. A sample batches
// enough calls to last >= sampleMs so that short kernels are not timer- or overhead-bound.
import os from "node:os";
import { readFileSync } from "node:fs";

/** One contender: a call that runs the kernel once (the i-th call may pick the i-th weight matrix). */
export interface Contender {
  name: string;
  run: (i: number) => void | Promise<unknown>;
}

export interface Timing {
  name: string;
  /** Median and min over samples, ms per call. */
  ms: number;
  msMin: number;
  samples: number;
  batch: number;
}

export interface MeasureOptions {
  /** At least this many samples per contender (unless maxSeconds runs out after 3). */
  repeats: number;
  /** Warm-up calls per contender before timing (the first also calibrates the batch). */
  warmup: number;
  /** Stop taking rounds once this much time went by (after at least 3 rounds). */
  maxSeconds: number;
  /** Target duration of one sample. */
  sampleMs: number;
}

const now = () => performance.now();

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function timeBatch(c: Contender, start: number, batch: number): Promise<number> {
  const t0 = now();
  for (let j = 0; j < batch; j++) {
    const r = c.run(start + j);
    if (r instanceof Promise) await r;
  }
  return (now() - t0) / batch;
}

export async function measure(contenders: readonly Contender[], o: MeasureOptions): Promise<Timing[]> {
  const batch: number[] = [];
  const calls: number[] = [];
  for (const c of contenders) {
    // Warm-up: the last warm-up call, timed, sets how many calls one sample takes.
    let last = 0;
    for (let w = 0; w < Math.max(1, o.warmup); w++) last = await timeBatch(c, w, 1);
    batch.push(Math.max(1, Math.min(10_000, Math.ceil(o.sampleMs / Math.max(last, 1e-3)))));
    calls.push(Math.max(1, o.warmup));
  }
  const samples: number[][] = contenders.map(() => []);
  const t0 = now();
  for (let round = 0; ; round++) {
    const order = contenders.map((_, i) => i);
    if (round % 2) order.reverse();
    for (const i of order) {
      samples[i].push(await timeBatch(contenders[i], calls[i], batch[i]));
      calls[i] += batch[i];
    }
    const elapsed = (now() - t0) / 1000;
    const n = round + 1;
    if (n >= o.repeats && elapsed >= Math.min(0.2, o.maxSeconds)) break;
    if (n >= 3 && elapsed >= o.maxSeconds) break;
  }
  return contenders.map((c, i) => ({
    name: c.name,
    ms: median(samples[i]),
    msMin: Math.min(...samples[i]),
    samples: samples[i].length,
    batch: batch[i],
  }));
}

/**
 * Run a bench's main(): its return value is the exit code, an exception exits 2 with the stack,
 * and `… --json | head` closing stdout early is not an error.
 */
export function runMain(name: string, main: () => Promise<number>): void {
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(0);
    throw e;
  });
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`${name}: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = 2;
    },
  );
}

export interface MachineInfo {
  date: string;
  nproc: number;
  cpu: string;
  memGiB: number;
  node: string;
  v8: string;
  platform: string;
  loadavg: string;
}

/** What a result was measured on — and, since this machine is shared, how busy it was. */
export function machineInfo(): MachineInfo {
  let cpu = os.cpus()[0]?.model ?? "?";
  try {
    cpu = /^model name\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? cpu;
  } catch {
    /* not Linux */
  }
  return {
    date: new Date().toISOString(),
    nproc: os.availableParallelism(),
    cpu,
    memGiB: os.totalmem() / 2 ** 30,
    node: process.version,
    v8: process.versions.v8,
    platform: `${process.platform}-${process.arch}`,
    loadavg: os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" "),
  };
}
