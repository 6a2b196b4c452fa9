// How fast this machine streams memory into WebAssembly: the roofline under decode, where every
// token reads every weight once. Read bandwidth = a SIMD sum over a 256 MiB buffer of non-zero
// bytes (never-written pages read as shared zero pages, ~2x too fast), on 1 thread and on 2 (the
// buffer split in halves, a worker_threads Worker summing one while this thread sums the other);
// copy bandwidth = a TypedArray.set of 128 MiB (read + write bytes counted). Medians of `repeats`,
// and the best sample of each read figure (on a shared machine the median is what a run gets, the
// best what the memory system gives: the roofline's lower bound uses the best).
//
// The kernel is a hand-assembled wasm function (no build step) reading STREAMS sequential streams at
// once, as our matvec reads 4 weight rows at once: one stream reached 12.6 GB/s here where 2 gave
// 16.6 and 4 gave 18.4–18.7 (8: no more) — a single stream does not keep enough misses in flight.
//   sum(p, len): stream s covers [p + s·len, p + (s+1)·len); per step each adds LOADS v128 loads
//   (i32x4) to its own accumulator → lane 0 of the accumulators' sum
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

const STREAMS = 4;
const LOADS = 4;

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
/** Signed LEB128 (i32.const's immediate: 64 is c0 00, not 40). */
const sleb = (n: number): number[] => {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) return [...out, b];
    out.push(b | 0x80);
  }
};
const str = (s: string) => [...leb(s.length), ...Buffer.from(s, "utf8")];
const section = (id: number, body: number[]) => [id, ...leb(body.length), ...body];

/** The module: imports a shared memory env.memory, exports sum(p: i32, len: i32) → i32. */
export function sumModuleBytes(S = STREAMS, U = LOADS): Uint8Array<ArrayBuffer> {
  // Locals after the params (0: p, 1: len): the S stream pointers, end, then S v128 accumulators.
  const ptr = (s: number) => 2 + s;
  const END = 2 + S;
  const acc = (s: number) => 3 + S + s;
  const add = [0xfd, ...leb(174)]; // i32x4.add
  const body = [2, S + 1, 0x7f, S, 0x7b];
  for (let s = 0; s < S; s++) body.push(0x20, 0, 0x20, 1, 0x41, ...sleb(s), 0x6c, 0x6a, 0x21, ptr(s)); // ptr_s = p + s·len
  body.push(0x20, 0, 0x20, 1, 0x6a, 0x21, END); // end = p + len
  body.push(0x03, 0x40); // loop
  for (let s = 0; s < S; s++)
    for (let u = 0; u < U; u++) body.push(0x20, acc(s), 0x20, ptr(s), 0xfd, 0x00, 4, ...leb(16 * u), ...add, 0x21, acc(s)); // acc_s += load(ptr_s + 16u)
  for (let s = 0; s < S; s++) body.push(0x20, ptr(s), 0x41, ...sleb(16 * U), 0x6a, 0x21, ptr(s)); // ptr_s += 16U
  body.push(0x20, ptr(0), 0x20, END, 0x49, 0x0d, 0, 0x0b); // br_if loop (ptr_0 < end); end
  body.push(0x20, acc(0));
  for (let s = 1; s < S; s++) body.push(0x20, acc(s), ...add);
  body.push(0xfd, 0x1b, 0, 0x0b); // i32x4.extract_lane 0; end
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

/** The worker: waits on ctl[0] for a round number, sums its region (sum(from, len)), stores the round in ctl[1]. */
const WORKER_SRC = `
const { workerData } = require("node:worker_threads");
const { memory, bytes, from, len, ctl } = workerData;
const flags = new Int32Array(ctl);
WebAssembly.instantiate(bytes, { env: { memory } }).then(({ instance }) => {
  const sum = instance.exports.sum;
  Atomics.store(flags, 1, -1); Atomics.notify(flags, 1);
  for (let round = 1; ; round++) {
    Atomics.wait(flags, 0, round - 1);
    if (Atomics.load(flags, 0) < 0) return;
    flags[2] = sum(from, len);
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

  sum(0, bytes / STREAMS); // warm-up (and tier-up)
  const r1: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    sum(0, bytes / STREAMS);
    r1.push(GB(bytes, performance.now() - t));
  }

  let read2: number | null = null;
  let read2Best: number | null = null;
  if (o.threads ?? true) {
    const ctl = new SharedArrayBuffer(16);
    const flags = new Int32Array(ctl);
    const half = bytes / 2;
    const w = new Worker(WORKER_SRC, { eval: true, workerData: { memory, bytes: sumModuleBytes(), from: half, len: half / STREAMS, ctl } });
    try {
      // Wait until the worker has compiled its module (it sets ctl[1] = -1).
      while (Atomics.load(flags, 1) !== -1) await new Promise((r) => setTimeout(r, 5));
      const r2: number[] = [];
      for (let round = 1; round <= repeats + 1; round++) {
        const t = performance.now();
        Atomics.store(flags, 0, round);
        Atomics.notify(flags, 0);
        sum(0, half / STREAMS);
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
