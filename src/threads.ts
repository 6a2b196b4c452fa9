// Worker threads over one shared WebAssembly.Memory.
//
// Every thread instantiates the same -mt module on the same shared memory; workers never allocate
// (kernels take raw pointers), so the main thread's arena stays the one owner of memory. A kernel
// call is split by a range argument (a linear's output rows, attention's heads): the main thread
// writes the call into a small shared control block, wakes the workers, runs its own part, and
// waits for theirs. Waiting spins briefly before sleeping, since one decode step makes ~100 such
// calls and a sleep/wake round trip costs tens of microseconds.
//
// Atomics.wait is not allowed on a browser page's main thread: there the pool can only be used
// from inside a worker (the model then runs in a worker), or not at all.
import { detectFeatures, importNodeBuiltin, type Wasm } from "./wasm.js";

/**
 * How the pool splits each kernel it can run: the kernel's arguments in order (as assembly/index.ts
 * exports it), the argument that starts the split range (the next one ends it), the unit ranges are
 * cut at (16 output rows: whole register tiles of the linear kernels), and the argument that is
 * per-thread scratch (each thread's moved by its index times the caller's stride).
 */
export const SPLITS = {
  linear: { args: ["y", "x", "w", "b", "T", "K", "N", "n0", "n1"], range: "n0", unit: 16, scratch: null },
  linearF16: { args: ["y", "x", "w", "b", "T", "K", "N", "n0", "n1", "scratch"], range: "n0", unit: 16, scratch: "scratch" },
  linearI8: { args: ["y", "x", "q", "s", "b", "T", "K", "N", "n0", "n1", "G", "scratch"], range: "n0", unit: 16, scratch: "scratch" },
  linearQ4: { args: ["y", "xq", "xs", "q", "s", "b", "T", "K", "N", "n0", "n1"], range: "n0", unit: 16, scratch: null },
  attention: {
    args: ["out", "q", "kCache", "vCache", "keyMask", "probs", "scratch", "T", "past", "H", "Hkv", "D", "maxCtx", "scale", "h0", "h1"],
    range: "h0",
    unit: 1,
    scratch: "scratch",
  },
  // The same arguments over f16 caches (a KVCache of kvDtype "f16").
  attentionF16: {
    args: ["out", "q", "kCache", "vCache", "keyMask", "probs", "scratch", "T", "past", "H", "Hkv", "D", "maxCtx", "scale", "h0", "h1"],
    range: "h0",
    unit: 1,
    scratch: "scratch",
  },
} as const satisfies Record<string, { args: readonly string[]; range: string; unit: number; scratch: string | null }>;
export type SplitKernel = keyof typeof SPLITS;
export const SPLITTABLE = Object.keys(SPLITS) as SplitKernel[];

// Control block (Int32Array) slots.
const SEQ = 0; // job number; workers wait for it to change
const DONE = 1; // workers finished with the current job
const KERNEL = 2;
const NARGS = 3;
const TOTAL = 4; // size of the range to split
const RANGE_ARG = 5; // index of the range start in args
const SCRATCH_ARG = 6; // index of a per-thread scratch pointer in args, or -1
const SCRATCH_STRIDE = 7; // bytes between threads' scratch regions
const PARTS = 8; // participants (workers + main)
const STOP = 9;
const FAILED = 10; // a worker's kernel threw
const UNIT = 11; // ranges are cut at multiples of this (SIMD tiles)
const ACK = 12; // workers that picked up the current job
const CTRL_INTS = 16;
const MAX_ARGS = 32;

// How long a waiting thread spins before it sleeps, and how long the main thread waits for a
// worker before it calls the worker dead (no kernel call here takes more than a few seconds).
const SPIN = 20000;
const WORKER_TIMEOUT_MS = 60_000;
// A live worker picks a job up within microseconds, or a few scheduler slices on a loaded machine;
// one that has not within this long is dead (killed, out of memory), not slow.
const ACK_TIMEOUT_MS = 5_000;

/** The worker's code, as a string: it runs unchanged from src/ or dist/, in Node and browsers. */
const WORKER_SOURCE = `
const isNode = typeof process !== "undefined" && !!(process.versions && process.versions.node) && typeof require === "function";
const port = isNode ? require("node:worker_threads").parentPort : self;
function onFirstMessage(f) { if (isNode) port.once("message", f); else self.onmessage = (e) => f(e.data); }
onFirstMessage((d) => {
  let k, ctrl, args;
  try {
    const inst = new WebAssembly.Instance(d.module, { env: { memory: d.memory, abort() { throw new Error("kernel abort"); } } });
    k = d.kernels.map((n) => inst.exports[n]);
    ctrl = new Int32Array(d.ctrl);
    args = new Float64Array(d.args);
  } catch (e) {
    port.postMessage({ error: String(e && e.message || e) });
    return;
  }
  port.postMessage({ ready: true });
  const me = d.index;
  const a = new Array(${MAX_ARGS});
  let seq = 0;
  for (;;) {
    let spins = 0;
    while (Atomics.load(ctrl, ${SEQ}) === seq) {
      // Timed, so that a terminating process can stop an idle worker between waits.
      if (++spins > ${SPIN}) Atomics.wait(ctrl, ${SEQ}, seq, 50);
    }
    seq = Atomics.load(ctrl, ${SEQ});
    if (Atomics.load(ctrl, ${STOP})) break;
    Atomics.add(ctrl, ${ACK}, 1);
    try {
      const n = ctrl[${NARGS}], total = ctrl[${TOTAL}], parts = ctrl[${PARTS}], unit = ctrl[${UNIT}];
      for (let i = 0; i < n; i++) a[i] = args[i];
      const units = Math.ceil(total / unit);
      const lo = Math.min(total, Math.floor(units * me / parts) * unit);
      const hi = Math.min(total, Math.floor(units * (me + 1) / parts) * unit);
      const r = ctrl[${RANGE_ARG}];
      const base = a[r];
      a[r] = base + lo; a[r + 1] = base + hi;
      const s = ctrl[${SCRATCH_ARG}];
      if (s >= 0) a[s] += me * ctrl[${SCRATCH_STRIDE}];
      if (hi > lo) k[ctrl[${KERNEL}]].apply(null, a.slice(0, n));
    } catch (e) {
      Atomics.store(ctrl, ${FAILED}, 1);
    }
    Atomics.add(ctrl, ${DONE}, 1);
    Atomics.notify(ctrl, ${DONE});
  }
});
`;

interface WorkerHandle {
  terminate(): unknown;
}

/**
 * The default thread count: the available cores where shared memory and workers exist, else 1
 * (a page that is not cross-origin isolated, or a runtime without workers).
 */
export async function defaultThreads(): Promise<number> {
  if (!detectFeatures().threads) return 1;
  if (typeof process !== "undefined" && process.versions?.node) {
    const os = await importNodeBuiltin<typeof import("node:os")>("os");
    return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
  }
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  // A page's main thread cannot Atomics.wait: the pool only runs inside a worker there.
  const inWorker = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== "undefined";
  return inWorker && typeof Worker !== "undefined" ? Math.max(1, nav?.hardwareConcurrency ?? 1) : 1;
}

export class ThreadPool {
  private ctrl: Int32Array;
  private args: Float64Array;
  private seq = 0;
  /** Parallel regions run so far (one per split call): wake-ups paid, for tests and benchmarks. */
  regions = 0;
  private closed = false;
  /** Set when a worker exits or fails after starting: the next call closes the pool. */
  private dead = false;
  private kernels: ((...a: number[]) => void)[];

  private constructor(
    wasm: Wasm,
    private workers: WorkerHandle[],
    ctrl: SharedArrayBuffer,
    args: SharedArrayBuffer,
  ) {
    this.ctrl = new Int32Array(ctrl);
    this.args = new Float64Array(args);
    this.kernels = SPLITTABLE.map((n) => wasm.k[n] as (...a: number[]) => void);
  }

  /** Threads taking part in each call (the workers and the calling thread). */
  get size(): number {
    return this.workers.length + 1;
  }

  /** Start `threads - 1` workers on the wasm's shared memory. */
  static async create(wasm: Wasm, threads: number): Promise<ThreadPool> {
    if (!wasm.shared) throw new Error("wasm-lm: worker threads need the shared-memory build (loadWasm({ shared: true }))");
    if (!Number.isInteger(threads) || threads < 2) throw new Error(`wasm-lm: a thread pool needs ≥ 2 threads, got ${threads}`);
    const spawn = await workerFactory();
    if (!canBlock()) {
      throw new Error(
        "wasm-lm: threads > 1 cannot run on a page's main thread (Atomics.wait is not allowed there): " +
          "load the model in a Web Worker, or use threads: 1",
      );
    }
    const ctrl = new SharedArrayBuffer(CTRL_INTS * 4);
    const args = new SharedArrayBuffer(MAX_ARGS * 8);
    const workers: WorkerHandle[] = [];
    let pool: ThreadPool | undefined;
    try {
      await Promise.all(
        Array.from(
          { length: threads - 1 },
          (_, i) =>
            new Promise<void>((resolve, reject) => {
              const w = spawn(
                (msg: { ready?: boolean; error?: string }) => {
                  if (msg.ready) resolve();
                  else reject(new Error(`wasm-lm: worker thread ${i + 1} failed to start: ${msg.error}`));
                },
                (e: unknown) => {
                  reject(new Error(`wasm-lm: worker thread ${i + 1} failed: ${(e as Error)?.message ?? e}`));
                  pool?.markDead();
                },
              );
              workers.push(w.handle);
              w.post({ module: wasm.module, memory: wasm.memory, ctrl, args, index: i + 1, kernels: [...SPLITTABLE] });
            }),
        ),
      );
    } catch (e) {
      for (const w of workers) void w.terminate();
      throw e;
    }
    pool = new ThreadPool(wasm, workers, ctrl, args);
    return pool;
  }

  /** A worker is gone: the next call closes the pool instead of waiting for it. */
  markDead(): void {
    if (!this.closed) this.dead = true;
  }

  /**
   * Run `kernel(...args)` split over the pool: args[rangeArg] / args[rangeArg + 1] are replaced by
   * each thread's share of [start, start + total) cut at multiples of `unit`; when scratchArg ≥ 0,
   * thread p's args[scratchArg] is moved by p · scratchStride bytes.
   */
  /**
   * Run `kernel(...args)` (every argument, the full range included) split over the pool as SPLITS
   * describes it: `total` is the range's size, `scratchStride` the bytes between threads' scratch.
   */
  split(kernel: SplitKernel, args: number[], total: number, scratchStride = 0): void {
    const s = SPLITS[kernel];
    const names = s.args as readonly string[];
    this.run(kernel, args, names.indexOf(s.range), total, s.unit, s.scratch ? names.indexOf(s.scratch) : -1, scratchStride);
  }

  run(kernel: SplitKernel, args: number[], rangeArg: number, total: number, unit = 1, scratchArg = -1, scratchStride = 0): void {
    if (this.closed) throw new Error("wasm-lm: the thread pool was closed");
    const c = this.ctrl;
    const parts = this.size;
    const ki = SPLITTABLE.indexOf(kernel);
    for (let i = 0; i < args.length; i++) this.args[i] = args[i];
    c[KERNEL] = ki;
    c[NARGS] = args.length;
    c[TOTAL] = total;
    c[RANGE_ARG] = rangeArg;
    c[SCRATCH_ARG] = scratchArg;
    c[SCRATCH_STRIDE] = scratchStride;
    c[PARTS] = parts;
    c[UNIT] = unit;
    if (this.dead) {
      this.close();
      throw new Error("wasm-lm: a worker thread died; the pool is closed and the model continues on one thread");
    }
    Atomics.store(c, DONE, 0);
    Atomics.store(c, ACK, 0);
    Atomics.store(c, FAILED, 0);
    this.regions++;
    Atomics.store(c, SEQ, ++this.seq);
    Atomics.notify(c, SEQ);

    // The calling thread's own share: part 0.
    const units = Math.ceil(total / unit);
    const hi = Math.min(total, Math.floor(units / parts) * unit);
    if (hi > 0) {
      const a = args.slice();
      const base = a[rangeArg];
      a[rangeArg] = base;
      a[rangeArg + 1] = base + hi;
      this.kernels[ki](...a);
    }
    this.waitForWorkers(parts - 1);
    if (Atomics.load(c, FAILED)) throw new Error(`wasm-lm: a worker thread failed in kernel '${kernel}'`);
  }

  private waitForWorkers(n: number): void {
    const c = this.ctrl;
    let spins = 0;
    const start = Date.now();
    for (;;) {
      const done = Atomics.load(c, DONE);
      if (done >= n) return;
      if (++spins > SPIN) {
        Atomics.wait(c, DONE, done, 20);
        const waited = Date.now() - start;
        if (waited > WORKER_TIMEOUT_MS || (waited > ACK_TIMEOUT_MS && Atomics.load(c, ACK) < n)) {
          this.close();
          throw new Error(
            `wasm-lm: a worker thread stopped responding (${Atomics.load(c, ACK) < n ? "a job not picked up" : "no answer"} ` +
              `in ${(waited / 1000).toFixed(0)} s); the pool is closed and the model continues on one thread`,
          );
        }
      }
    }
  }

  /** Stop the workers. The model falls back to one thread. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.ctrl, STOP, 1);
    Atomics.store(this.ctrl, SEQ, ++this.seq);
    Atomics.notify(this.ctrl, SEQ);
    for (const w of this.workers) void w.terminate();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

/** Whether this thread may block in Atomics.wait (a browser page's main thread may not: it throws). */
function canBlock(): boolean {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0); // "not-equal" at once where allowed
    return true;
  } catch {
    return false;
  }
}

type Spawn = (
  onMessage: (m: { ready?: boolean; error?: string }) => void,
  onError: (e: unknown) => void,
) => { handle: WorkerHandle; post(msg: unknown): void };

/** Node's worker_threads, or Web Workers from a Blob URL. */
async function workerFactory(): Promise<Spawn> {
  const isNode = typeof process !== "undefined" && !!process.versions?.node;
  if (isNode) {
    const { Worker } = await importNodeBuiltin<typeof import("node:worker_threads")>("worker_threads");
    return (onMessage, onError) => {
      const w = new Worker(WORKER_SOURCE, { eval: true });
      w.on("message", (m) => {
        // Once started, idle workers must not keep the process alive. (unref after the listener:
        // adding a 'message' listener re-refs the port.)
        if (m?.ready) w.unref();
        onMessage(m);
      });
      w.on("error", onError);
      w.on("exit", (code) => onError(new Error(`exited with code ${code}`)));
      return { handle: w, post: (m) => w.postMessage(m) };
    };
  }
  if (typeof Worker === "undefined") throw new Error("wasm-lm: this runtime has no Worker: run with one thread");
  const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
  return (onMessage, onError) => {
    const w = new Worker(url);
    w.onmessage = (e) => onMessage(e.data);
    w.onerror = (e) => onError(e);
    return { handle: w, post: (m) => w.postMessage(m) };
  };
}
