// How fast this machine streams memory into WebAssembly: the roofline under decode, where every
// token reads every weight once. Read bandwidth = a SIMD sum over a 256 MiB buffer of non-zero
// bytes (never-written pages read as shared zero pages, ~2x too fast), on 1 thread and on 2 (the
// buffer split in halves, a worker_threads Worker summing one while this thread sums the other);
// copy bandwidth = a TypedArray.set of 128 MiB (read + write bytes counted). Medians of `repeats`,
// and the best sample of each read figure (on a shared machine the median is what a run gets, the
// best what the memory system gives: the roofline's lower bound uses the best).
//
// The kernel is a hand-assembled wasm function (no build step), four independent accumulators:
//   sum(p, end): a, b, c, d += v128.load(p + 0, 16, 32, 48) as i32x4, p += 64 while p < end → lane 0 of a+b+c+d
import { Worker } from "node:worker_threads";
import { median } from "./model-common.js";

export interface Bandwidth {
  /** Median GB/s (1e9 bytes) reading with 1 and 2 threads, and copying with 1. */
  read1: number;
  read2: number | null;
  copy1: number;
  /** The fastest sample of read1 / read2. */
  read1Best: number;
  read2Best: number | null;
  /** Buffer size (MiB) and samples per figure. */
  mib: number;
  repeats: number;
}

const leb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
const str = (s: string) => [...leb(s.length), ...Buffer.from(s, "utf8")];
const section = (id: number, body: number[]) => [id, ...leb(body.length), ...body];

/** The module: imports a shared memory env.memory, exports sum(p: i32, end: i32) → i32. */
export function sumModuleBytes(): Uint8Array<ArrayBuffer> {
  const load = (offset: number) => [0x20, 0, 0xfd, 0x00, 4, ...leb(offset)]; // local.get p; v128.load align=16 offset
  const add = [0xfd, ...leb(174)]; // i32x4.add
  const acc = (local: number, offset: number) => [0x20, local, ...load(offset), ...add, 0x21, local];
  const body = [
    ...[1, 4, 0x7b], // locals: 4 × v128 (indices 2…5)
    ...[0x03, 0x40], // loop
    ...acc(2, 0),
    ...acc(3, 16),
    ...acc(4, 32),
    ...acc(5, 48),
    ...[0x20, 0, 0x41, 0xc0, 0x00, 0x6a, 0x22, 0], // p = p + 64 (tee; i32.const is signed LEB128: 64 = c0 00)
    ...[0x20, 1, 0x49, 0x0d, 0], // br_if 0 (p < end)
    0x0b, // end loop
    ...[0x20, 2, 0x20, 3, ...add, 0x20, 4, ...add, 0x20, 5, ...add, 0xfd, 0x1b, 0], // lane 0 of a+b+c+d
    0x0b,
  ];
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [1, 0x60, 2, 0x7f, 0x7f, 1, 0x7f]),
    ...section(2, [1, ...str("env"), ...str("memory"), 0x02, 0x03, ...leb(1), ...leb(65536)]),
    ...section(3, [1, 0]),
    ...section(7, [1, ...str("sum"), 0x00, 0]),
    ...section(10, [1, ...leb(body.length), ...body]),
  ]);
}

type Sum = (p: number, end: number) => number;

async function instantiate(memory: WebAssembly.Memory): Promise<Sum> {
  const instance = await WebAssembly.instantiate(new WebAssembly.Module(sumModuleBytes()), { env: { memory } });
  return instance.exports.sum as Sum;
}

/** The worker: waits on ctl[0] for a round number, sums [from, to), stores the round in ctl[1]. */
const WORKER_SRC = `
const { workerData } = require("node:worker_threads");
const { memory, bytes, from, to, ctl } = workerData;
const flags = new Int32Array(ctl);
WebAssembly.instantiate(bytes, { env: { memory } }).then(({ instance }) => {
  const sum = instance.exports.sum;
  Atomics.store(flags, 1, -1); Atomics.notify(flags, 1);
  for (let round = 1; ; round++) {
    Atomics.wait(flags, 0, round - 1);
    if (Atomics.load(flags, 0) < 0) return;
    flags[2] = sum(from, to);
    Atomics.store(flags, 1, round); Atomics.notify(flags, 1);
  }
});
`;

export async function measureBandwidth(o: { mib?: number; repeats?: number; threads?: boolean } = {}): Promise<Bandwidth> {
  const mib = o.mib ?? 256;
  const repeats = o.repeats ?? 7;
  const bytes = mib * 2 ** 20;
  const pages = bytes / 65536 + 1;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  new Uint32Array(memory.buffer, 0, bytes / 4).fill(0x01020304);
  const sum = await instantiate(memory);
  const GB = (n: number, ms: number) => n / 1e9 / (ms / 1000);

  sum(0, bytes); // warm-up (and tier-up)
  const r1: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    sum(0, bytes);
    r1.push(GB(bytes, performance.now() - t));
  }

  let read2: number | null = null;
  let read2Best: number | null = null;
  if (o.threads ?? true) {
    const ctl = new SharedArrayBuffer(16);
    const flags = new Int32Array(ctl);
    const half = bytes / 2;
    const w = new Worker(WORKER_SRC, { eval: true, workerData: { memory, bytes: sumModuleBytes(), from: half, to: bytes, ctl } });
    try {
      // Wait until the worker has compiled its module (it sets ctl[1] = -1).
      while (Atomics.load(flags, 1) !== -1) await new Promise((r) => setTimeout(r, 5));
      const r2: number[] = [];
      for (let round = 1; round <= repeats + 1; round++) {
        const t = performance.now();
        Atomics.store(flags, 0, round);
        Atomics.notify(flags, 0);
        sum(0, half);
        while (Atomics.load(flags, 1) !== round) Atomics.wait(flags, 1, Atomics.load(flags, 1), 1000);
        if (round > 1) r2.push(GB(bytes, performance.now() - t)); // round 1: the worker's warm-up
      }
      read2 = median(r2);
      read2Best = Math.max(...r2);
    } finally {
      Atomics.store(flags, 0, -1);
      Atomics.notify(flags, 0);
      await w.terminate();
    }
  }

  const src = new Uint8Array(memory.buffer, 0, bytes / 2);
  const dst = new Uint8Array(memory.buffer, bytes / 2, bytes / 2);
  dst.set(src);
  const c1: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    dst.set(src);
    c1.push(GB(bytes, performance.now() - t)); // bytes/2 read + bytes/2 written
  }
  return { read1: median(r1), read2, copy1: median(c1), read1Best: Math.max(...r1), read2Best, mib, repeats };
}

export const describeBandwidth = (b: Bandwidth): string =>
  `read ${b.read1.toFixed(1)} GB/s (1 thread; best ${b.read1Best.toFixed(1)}), ${b.read2?.toFixed(1) ?? "-"} GB/s (2 threads; best ` +
  `${b.read2Best?.toFixed(1) ?? "-"}); copy ${b.copy1.toFixed(1)} GB/s (read + written, 1 thread); ${b.mib} MiB, medians of ${b.repeats}`;

/** `npx tsx bench/bandwidth.ts`: print the figures. */
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").pop()!))
  console.log(describeBandwidth(await measureBandwidth()));
