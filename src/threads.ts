// Worker threads over one shared WebAssembly.Memory.
//
// Every thread instantiates the same -mt module on the same shared memory; workers never allocate
// (kernels take raw pointers), so the main thread's arena stays the one owner of memory. A parallel
// region runs one or more independent kernel calls, each split by a range argument (a linear's
// output rows, attention's heads) into chunks of whole units: the main thread writes the calls into
// a small shared job table, bumps a region number that idle workers watch (spinning briefly, then
// Atomics.wait: no postMessage after start-up), and every thread claims chunks from one shared
// counter until none are left. The main thread works too, and only ever waits for chunks a worker
// is running, never for a worker to wake up: on a loaded machine a late worker just gets fewer.
//
// Atomics.wait is not allowed on a browser page's main thread: there the pool can only be used
// from inside a worker (the model then runs in a worker), or not at all.
import { detectFeatures, importNodeBuiltin, isNode, type Wasm } from "./wasm.js";

/**
 * How the pool splits each kernel it can run: the kernel's arguments in order (as assembly/index.ts
 * exports it), the argument that starts the split range (the next one ends it), the unit ranges are
 * cut at (16 output rows: whole register tiles of the linear kernels; a unit is computed the same
 * way whichever piece it falls in, so any cut gives the same bits), the smallest piece in units,
 * and the argument that is per-thread scratch (each thread's moved by its index times the job's
 * scratchStride). Linears are not cut below 8 units (128 rows): measured on OPT-125M's matvecs
 * (int8 and q4, 2 threads, same run), a 768-row region whose last pieces are 1-2 units takes up to
 * 25 % longer than one cut no finer than 8 (each piece: a claim, a call, four row streams restarted).
 */
export const SPLITS = {
  linear: { args: ["y", "x", "w", "b", "T", "K", "N", "n0", "n1"], range: "n0", unit: 16, minPiece: 8, scratch: null },
  linearF16: {
    args: ["y", "x", "w", "b", "T", "K", "N", "n0", "n1", "scratch"],
    range: "n0",
    unit: 16,
    minPiece: 8,
    scratch: "scratch",
  },
  linearI8: {
    args: ["y", "x", "q", "s", "b", "T", "K", "N", "n0", "n1", "G", "scratch"],
    range: "n0",
    unit: 16,
    minPiece: 8,
    scratch: "scratch",
  },
  linearQ4: { args: ["y", "xq", "xs", "q", "s", "b", "T", "K", "N", "n0", "n1"], range: "n0", unit: 16, minPiece: 8, scratch: null },
  gemmQ4Tiles: { args: ["y", "xq", "xt", "q", "s", "b", "T", "K", "N", "n0", "n1"], range: "n0", unit: 16, minPiece: 8, scratch: null },
  matvecI8A16: { args: ["y", "xq", "xs", "q", "s", "b", "K", "n0", "n1", "G"], range: "n0", unit: 16, minPiece: 8, scratch: null },
  attention: {
    args: ["out", "q", "kCache", "vCache", "keyMask", "probs", "scratch", "T", "past", "H", "Hkv", "D", "maxCtx", "scale", "h0", "h1"],
    range: "h0",
    unit: 1,
    minPiece: 1,
    scratch: "scratch",
  },
  // The same arguments over f16 caches (a KVCache of kvDtype "f16").
  attentionF16: {
    args: ["out", "q", "kCache", "vCache", "keyMask", "probs", "scratch", "T", "past", "H", "Hkv", "D", "maxCtx", "scale", "h0", "h1"],
    range: "h0",
    unit: 1,
    minPiece: 1,
    scratch: "scratch",
  },
} as const satisfies Record<string, { args: readonly string[]; range: string; unit: number; minPiece: number; scratch: string | null }>;
export type SplitKernel = keyof typeof SPLITS;
export const SPLITTABLE = Object.keys(SPLITS) as SplitKernel[];

/** A splittable kernel's arguments by name. */
export type SplitArgs<K extends SplitKernel> = { [A in (typeof SPLITS)[K]["args"][number]]: number };

/**
 * One kernel call for the pool: every argument in SPLITS order, the full range included (the
 * range argument and the next one: [start, end)).
 */
export interface SplitJob {
  kernel: SplitKernel;
  args: readonly number[];
  /** Bytes between threads' scratch regions (kernels with a scratch argument). */
  scratchStride?: number;
}

/** A job from named arguments: SPLITS puts them in order. */
export function splitJob<K extends SplitKernel>(kernel: K, args: SplitArgs<K>, scratchStride = 0): SplitJob {
  const named = args as Record<string, number>;
  const names = SPLITS[kernel].args as readonly string[];
  const a = new Array<number>(names.length);
  for (let i = 0; i < names.length; i++) a[i] = named[names[i]];
  return { kernel, args: a, scratchStride };
}

// A region is cut into chunks: each job's range into pieces of whole units, numbered across the
// region's jobs. Threads claim chunks one at a time from a shared counter, so a thread that is late
// (asleep, descheduled by another process) simply gets fewer: the caller never waits for a worker
// that has not started, only for a chunk a worker is running. Pieces shrink along a job (each an
// even share, 1/threads, of what is left, down to SPLITS' minPiece: "guided" scheduling), so the
// last ones, which decide how long the others wait, are small, while the first ones are long row
// streams: measured on a quiet machine, first pieces of 1/(2·threads) made OPT-125M's int8 and q4
// regions 5-20 % slower on 2 threads than 1/threads (more, shorter streams from two cores). Each unit is computed by the same code
// whichever thread runs it, so results do not depend on who ran what.

// Control block (Int32Array) slots.
const SEQ = 0; // region number; idle workers wait for it to change
const CLAIM = 1; // (region tag << CHUNK_BITS) | next unclaimed chunk
const FINISHED = 2; // chunks finished in the current region
const NCHUNKS = 3;
const STOP = 4;
const FAILED = 5; // a worker's kernel threw (the kernel's index + 1)
const SPIN_US = 6; // how long an idle worker spins before it sleeps
const SLEEPERS = 7; // workers in Atomics.wait: the caller notifies only when there are some
const SEEN = 16; // SEEN + i: the last region worker i picked up
const MAX_THREADS = 256;
const CTRL_INTS = SEEN + MAX_THREADS + 1;

const CHUNK_BITS = 12;
const MAX_CHUNKS = 1 << CHUNK_BITS;
const TAG_MASK = (1 << (32 - CHUNK_BITS)) - 1;

// Job table (Float64Array): per job its header, then its arguments.
const J_KERNEL = 0;
const J_NARGS = 1;
const J_RANGE = 2; // index of the range start in args (the end is the next one)
const J_SCRATCH = 3; // index of the per-thread scratch pointer, or -1
const J_STRIDE = 4;
const J_ARGS = 5;
const MAX_ARGS = 16; // wasm ignores extra arguments: every kernel is called with 16
const JOB_DOUBLES = 24;
const MAX_JOBS = 64;
// Chunk table (Int32Array): per chunk its job and its [lo, hi) offsets into the job's range.
const CHUNK_INTS = 3;

/** How long a thread with nothing to do spins before it sleeps (µs); see threads-scaling.mts. */
const DEFAULT_SPIN_US = 50;
// How long the main thread waits for a chunk a worker is running before it calls the worker dead
// (no kernel call here takes more than a few seconds), and how long a worker may go without picking
// up any region while regions are run before it is dead (killed, out of memory), not slow.
const WORKER_TIMEOUT_MS = 60_000;
const ACK_TIMEOUT_MS = 5_000;

/** The worker's code, as a string: it runs unchanged from src/ or dist/, in Node and browsers. */
const WORKER_SOURCE = `
const isNode = typeof process !== "undefined" && !!(process.versions && process.versions.node) && typeof require === "function";
const port = isNode ? require("node:worker_threads").parentPort : self;
function onFirstMessage(f) { if (isNode) port.once("message", f); else self.onmessage = (e) => f(e.data); }
onFirstMessage((d) => {
  let k, ctrl, jobs, chunks;
  try {
    const inst = new WebAssembly.Instance(d.module, { env: { memory: d.memory, abort() { throw new Error("kernel abort"); } } });
    k = d.kernels.map((n) => inst.exports[n]);
    ctrl = new Int32Array(d.ctrl);
    jobs = new Float64Array(d.jobs);
    chunks = new Int32Array(d.chunks);
  } catch (e) {
    port.postMessage({ error: String(e && e.message || e) });
    return;
  }
  port.postMessage({ ready: true });
  const me = d.index;
  const a = new Float64Array(${MAX_ARGS});
  function runChunk(c) {
    const j = chunks[c * ${CHUNK_INTS}], o = j * ${JOB_DOUBLES};
    const n = jobs[o + ${J_NARGS}];
    for (let i = 0; i < n; i++) a[i] = jobs[o + ${J_ARGS} + i];
    const r = jobs[o + ${J_RANGE}];
    const base = a[r];
    a[r] = base + chunks[c * ${CHUNK_INTS} + 1];
    a[r + 1] = base + chunks[c * ${CHUNK_INTS} + 2];
    const s = jobs[o + ${J_SCRATCH}];
    if (s >= 0) a[s] += me * jobs[o + ${J_STRIDE}];
    const ki = jobs[o + ${J_KERNEL}];
    try {
      k[ki](a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]);
    } catch (e) {
      Atomics.store(ctrl, ${FAILED}, ki + 1);
    }
  }
  let seq = 0;
  for (;;) {
    if (Atomics.load(ctrl, ${SEQ}) === seq) {
      // Idle: spin a little (the next region usually comes within microseconds), then sleep.
      const t0 = performance.now(), spinMs = ctrl[${SPIN_US}] / 1000;
      for (let i = 1; Atomics.load(ctrl, ${SEQ}) === seq; i++) {
        if ((i & 63) === 0 && performance.now() - t0 >= spinMs) {
          Atomics.add(ctrl, ${SLEEPERS}, 1);
          // Timed, so that a terminating process can stop an idle worker between waits.
          while (Atomics.load(ctrl, ${SEQ}) === seq) Atomics.wait(ctrl, ${SEQ}, seq, 50);
          Atomics.sub(ctrl, ${SLEEPERS}, 1);
        }
      }
    }
    seq = Atomics.load(ctrl, ${SEQ});
    if (Atomics.load(ctrl, ${STOP})) break;
    Atomics.store(ctrl, ${SEEN} + me, seq);
    // Claim chunks of this region until none is left (a claim names the region: a worker that
    // wakes late cannot take a chunk of the next one).
    const tag = seq & ${TAG_MASK};
    for (;;) {
      const v = Atomics.load(ctrl, ${CLAIM});
      if (v >>> ${CHUNK_BITS} !== tag) break;
      const c = v & ${MAX_CHUNKS - 1};
      const n = ctrl[${NCHUNKS}];
      if (c >= n) break;
      if (Atomics.compareExchange(ctrl, ${CLAIM}, v, v + 1) !== v) continue;
      runChunk(c);
      if (Atomics.add(ctrl, ${FINISHED}, 1) + 1 === n) Atomics.notify(ctrl, ${FINISHED});
    }
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
  private jobs: Float64Array;
  private seq = 0;
  /** Parallel regions run so far (one per run/split call): wake-ups paid, for tests and benchmarks. */
  regions = 0;
  /** When set, every job is cut down to pieces of this many units (tests: 1, every boundary). */
  minPiece: number | null = null;
  private closed = false;
  /** Set when a worker exits or fails after starting: the next call closes the pool. */
  private dead = false;
  private kernels: ((...a: number[]) => void)[];
  private chunks: Int32Array;
  /** The calling thread's copy of each job: its kernel, arguments and range start. */
  private local: { fn: (...a: number[]) => void; args: Float64Array; range: number; base: number }[] = [];
  /** Per worker: the last region it was seen to pick up, and when that changed (liveness). */
  private lastSeen: number[];
  private lastProgress: number[];

  private constructor(
    wasm: Wasm,
    private workers: WorkerHandle[],
    ctrl: SharedArrayBuffer,
    jobs: SharedArrayBuffer,
    chunks: SharedArrayBuffer,
  ) {
    this.ctrl = new Int32Array(ctrl);
    this.jobs = new Float64Array(jobs);
    this.chunks = new Int32Array(chunks);
    this.kernels = SPLITTABLE.map((n) => wasm.k[n] as (...a: number[]) => void);
    this.lastSeen = workers.map(() => 0);
    this.lastProgress = workers.map(() => 0);
    this.spinMicros = DEFAULT_SPIN_US;
  }

  /** Threads taking part in each call (the workers and the calling thread). */
  get size(): number {
    return this.workers.length + 1;
  }

  /**
   * How long a thread with nothing to do spins before it sleeps, in µs: an idle worker waiting for
   * the next region, the caller waiting for a worker's last chunk. Spinning saves the wake-up (tens
   * of µs to a millisecond here) but takes the core from whatever else would run on it.
   */
  get spinMicros(): number {
    return this.ctrl[SPIN_US];
  }
  set spinMicros(us: number) {
    this.ctrl[SPIN_US] = Math.max(0, Math.round(us));
  }

  /** Start `threads - 1` workers on the wasm's shared memory. */
  static async create(wasm: Wasm, threads: number): Promise<ThreadPool> {
    if (!wasm.shared) throw new Error("wasm-lm: worker threads need the shared-memory build (loadWasm({ shared: true }))");
    if (!Number.isInteger(threads) || threads < 2 || threads > MAX_THREADS)
      throw new Error(`wasm-lm: a thread pool needs 2 … ${MAX_THREADS} threads, got ${threads}`);
    const spawn = await workerFactory();
    if (!canBlock()) {
      throw new Error(
        "wasm-lm: threads > 1 cannot run on a page's main thread (Atomics.wait is not allowed there): " +
          "load the model in a Web Worker, or use threads: 1",
      );
    }
    const ctrl = new SharedArrayBuffer(CTRL_INTS * 4);
    const jobs = new SharedArrayBuffer(MAX_JOBS * JOB_DOUBLES * 8);
    const chunks = new SharedArrayBuffer(MAX_CHUNKS * CHUNK_INTS * 4);
    new Int32Array(ctrl)[SPIN_US] = DEFAULT_SPIN_US;
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
              w.post({ module: wasm.module, memory: wasm.memory, ctrl, jobs, chunks, index: i + 1, kernels: [...SPLITTABLE] });
            }),
        ),
      );
    } catch (e) {
      for (const w of workers) void w.terminate();
      throw e;
    }
    pool = new ThreadPool(wasm, workers, ctrl, jobs, chunks);
    return pool;
  }

  /** A worker is gone: the next call closes the pool instead of waiting for it. */
  markDead(): void {
    if (!this.closed) this.dead = true;
  }

  /** Run one kernel call split over the pool (see run). */
  split(kernel: SplitKernel, args: readonly number[], scratchStride = 0): void {
    this.run([{ kernel, args, scratchStride }]);
  }

  /**
   * Run independent kernel calls in one parallel region: each is cut as SPLITS describes it (its
   * range argument replaced by pieces of whole units; its scratch argument, if any, moved by the
   * running thread's index times scratchStride) and the threads share out the pieces of all of
   * them. Returns when every piece is done. The jobs must not depend on each other's outputs.
   */
  run(jobs: readonly SplitJob[]): void {
    if (this.closed) throw new Error("wasm-lm: the thread pool was closed");
    if (this.dead) {
      this.close();
      throw new Error("wasm-lm: a worker thread died; the pool is closed and the model continues on one thread");
    }
    for (let j0 = 0; j0 < jobs.length; j0 += MAX_JOBS) this.region(jobs.length <= MAX_JOBS ? jobs : jobs.slice(j0, j0 + MAX_JOBS));
  }

  /**
   * Wake every worker with an empty region and wait until each has picked it up: the wake-up round
   * trip a region pays when its workers are asleep (or the spin-then-notify cost when they are not).
   */
  ping(): void {
    this.region([]);
    const c = this.ctrl;
    const start = performance.now();
    for (let i = 1; i <= this.workers.length; i++) {
      while (Atomics.load(c, SEEN + i) !== this.seq) {
        if (performance.now() - start > ACK_TIMEOUT_MS) throw new Error("wasm-lm: a worker thread did not wake up");
      }
    }
  }

  private region(jobs: readonly SplitJob[]): void {
    const c = this.ctrl;
    const parts = this.size;
    const ct = this.chunks;
    this.checkAlive();
    let chunks = 0;
    for (let j = 0; j < jobs.length; j++) {
      const { kernel, args, scratchStride = 0 } = jobs[j];
      const s = SPLITS[kernel];
      const names = s.args as readonly string[];
      if (args.length !== names.length) throw new Error(`wasm-lm: ${kernel} takes ${names.length} arguments, got ${args.length}`);
      const range = names.indexOf(s.range);
      const total = args[range + 1] - args[range];
      // Guided pieces: an even share (1/parts) of the units left, at least minPiece units (and big
      // enough for the chunk table to hold every job's pieces: only at hundreds of threads).
      const units = Math.ceil(total / s.unit);
      const minPiece = this.minPiece ?? s.minPiece;
      const slots = Math.floor((MAX_CHUNKS - chunks) / (jobs.length - j));
      for (let done = 0, used = 0; done < units; used++) {
        const left = units - done;
        const next = done + Math.max(Math.min(left, minPiece), Math.ceil(left / parts), Math.ceil(left / (slots - used)));
        ct[chunks * CHUNK_INTS] = j;
        ct[chunks * CHUNK_INTS + 1] = done * s.unit;
        ct[chunks * CHUNK_INTS + 2] = Math.min(total, next * s.unit);
        chunks++;
        done = next;
      }
      const o = j * JOB_DOUBLES;
      const jt = this.jobs;
      const ki = SPLITTABLE.indexOf(kernel);
      jt[o + J_KERNEL] = ki;
      jt[o + J_NARGS] = args.length;
      jt[o + J_RANGE] = range;
      jt[o + J_SCRATCH] = s.scratch ? names.indexOf(s.scratch) : -1;
      jt[o + J_STRIDE] = scratchStride;
      for (let i = 0; i < args.length; i++) jt[o + J_ARGS + i] = args[i];
      const l = (this.local[j] ??= { fn: () => {}, args: new Float64Array(MAX_ARGS), range: 0, base: 0 });
      l.fn = this.kernels[ki];
      l.args.set(args);
      l.range = range;
      l.base = args[range];
    }
    c[NCHUNKS] = chunks;
    Atomics.store(c, FINISHED, 0);
    Atomics.store(c, FAILED, 0);
    this.seq++;
    this.regions++;
    const tagged = (this.seq & TAG_MASK) << CHUNK_BITS;
    Atomics.store(c, CLAIM, tagged);
    Atomics.store(c, SEQ, this.seq);
    if (Atomics.load(c, SLEEPERS) > 0) Atomics.notify(c, SEQ);

    // The calling thread claims pieces like the workers (it is thread 0: its scratch is not moved).
    try {
      for (;;) {
        const v = Atomics.load(c, CLAIM);
        const ch = v - tagged;
        if (ch >= chunks) break;
        if (Atomics.compareExchange(c, CLAIM, v, v + 1) !== v) continue;
        const l = this.local[ct[ch * CHUNK_INTS]];
        const a = l.args;
        a[l.range] = l.base + ct[ch * CHUNK_INTS + 1];
        a[l.range + 1] = l.base + ct[ch * CHUNK_INTS + 2];
        try {
          l.fn(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]);
        } finally {
          Atomics.add(c, FINISHED, 1);
        }
      }
    } catch (e) {
      // This thread's kernel threw: take the unclaimed pieces off the table, wait for the ones
      // workers are running (the next region must not rewrite the tables under them), rethrow.
      const next = Atomics.exchange(c, CLAIM, tagged + chunks) - tagged;
      Atomics.add(c, FINISHED, Math.max(0, chunks - next));
      this.waitForChunks(chunks);
      throw e;
    }
    this.waitForChunks(chunks);
    const failed = Atomics.load(c, FAILED);
    if (failed) throw new Error(`wasm-lm: a worker thread failed in kernel '${SPLITTABLE[failed - 1]}'`);
  }

  /** Wait for the chunks workers are still running: spin for spinMicros, then sleep until notified. */
  private waitForChunks(n: number): void {
    const c = this.ctrl;
    if (Atomics.load(c, FINISHED) >= n) return;
    const start = performance.now();
    const spinMs = c[SPIN_US] / 1000;
    for (let i = 1; ; i++) {
      const done = Atomics.load(c, FINISHED);
      if (done >= n) return;
      if ((i & 63) === 0 && performance.now() - start >= spinMs) {
        Atomics.wait(c, FINISHED, done, 20);
        if (performance.now() - start > WORKER_TIMEOUT_MS) {
          this.close();
          throw new Error(
            `wasm-lm: a worker thread stopped responding (no answer in ${WORKER_TIMEOUT_MS / 1000} s); ` +
              "the pool is closed and the model continues on one thread",
          );
        }
      }
    }
  }

  /**
   * A worker that has picked up no region for ACK_TIMEOUT_MS while regions were run is dead (its
   * exit event cannot arrive while this thread is busy): close the pool rather than lose it silently.
   */
  private checkAlive(): void {
    const c = this.ctrl;
    for (let i = 0; i < this.workers.length; i++) {
      const seen = Atomics.load(c, SEEN + i + 1);
      if (seen === this.seq) continue; // up to date
      const now = performance.now();
      if (seen !== this.lastSeen[i] || this.lastProgress[i] === 0) {
        this.lastSeen[i] = seen;
        this.lastProgress[i] = now;
      } else if (now - this.lastProgress[i] > ACK_TIMEOUT_MS) {
        this.close();
        throw new Error(
          `wasm-lm: a worker thread stopped responding (no region picked up in ${(ACK_TIMEOUT_MS / 1000).toFixed(0)} s); ` +
            "the pool is closed and the model continues on one thread",
        );
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
