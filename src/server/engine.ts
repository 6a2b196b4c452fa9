// Continuous batching: requests decode together, one forward pass per step for all of them.
//
// Decoding is memory-bound — a step reads every weight once whatever its batch — so B sequences
// decoded in one pass cost little more than one. The engine keeps a fixed set of KV-cache slots
// (reserved once: the arena never grows while serving); a request takes a free slot, its prompt is
// prefilled alone, then it joins the running batch between two steps; each step runs the batch's
// last tokens through the model as B rows, each row over its own cache; a finished, failed or
// cancelled request frees its slot at once. Sampling and stop conditions stay per request.
import { kvDtypeOf, type DecoderModel, type KVCache, type KVDType } from "../models/decoder.js";
import {
  applyRepetitionPenalty,
  argmax,
  isSampling,
  logSoftmax,
  Sampler,
  topIds,
  validateSampling,
  type SamplingOptions,
} from "../generate/sampling.js";

/** One generation request, in token ids (text, chat templates and stop strings are the caller's). */
export interface EngineRequest {
  prompt: number[];
  /** New tokens at most. */
  maxTokens: number;
  /** Sampling as generate's (temperature, topK, topP, repetitionPenalty, seed); none: greedy. */
  sampling?: SamplingOptions;
  /** OpenAI's presence and frequency penalties (0: off), applied to the logits before sampling. */
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** Stop after producing one of these ids (it is yielded, with finish "stop"). */
  stopTokenIds?: number[];
  /** With n > 0, each token comes with its log-probability and the n most likely alternatives. */
  topLogprobs?: number;
  /** Aborting cancels the request: it leaves the batch (or the queue) and frees its slot. */
  signal?: AbortSignal;
}

export interface EngineToken {
  id: number;
  /** log p(id) under the sampling distribution's logits (before temperature), when asked for. */
  logprob?: number;
  top?: { id: number; logprob: number }[];
}

/** "stop": a stop id; "length": maxTokens or the context's end. */
export type EngineFinish = "stop" | "length";

/** Thrown (synchronously from generate) when every slot is busy and the queue is full. */
export class QueueFullError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super("wasm-lm: the server is busy: every decoding slot is taken and the queue is full");
    this.name = "QueueFullError";
  }
}

/** Thrown (synchronously from generate) once drain() has been called: the server is stopping. */
export class EngineClosedError extends Error {
  constructor() {
    super("wasm-lm: the server is shutting down");
    this.name = "EngineClosedError";
  }
}

export interface EngineOptions {
  /** Requests decoded together at most (KV-cache slots). Default 8. */
  maxBatch?: number;
  /** Requests waiting for a slot at most; more are refused with QueueFullError. Default 64. */
  maxQueue?: number;
  /** Context of each slot (prompt + new tokens). Default min(max positions, 2048). */
  ctx?: number;
  /** How the slots' KV caches hold keys and values: "f32" (default) or "f16" (half the memory per slot). */
  kvDtype?: KVDType;
  /** false: one request at a time (each step a batch of one) — for comparing. Default true. */
  batching?: boolean;
  /** Ids the tokenizer can decode: rows of the lm_head past it (padding) are never chosen. */
  decodable?: number;
  /**
   * How a request waits while another one's step runs: 0 — woken by that step (a promise it
   * resolves); n > 0 — by polling every n ms. Default 0, except 1 in Cloudflare Workers / workerd,
   * where a promise resolved by another request's code is never delivered (the waiting request
   * is then cancelled as hung).
   */
  pollMs?: number;
}

const inWorkers = () => (globalThis as { navigator?: { userAgent?: string } }).navigator?.userAgent === "Cloudflare-Workers";

export interface EngineStats {
  active: number;
  queued: number;
  maxBatch: number;
  maxQueue: number;
  ctx: number;
  kvDtype: KVDType;
  /** Decode steps run, and rows summed over them (rows / steps = mean batch). */
  steps: number;
  rows: number;
}

/** A request in the engine: queued, then decoding in a slot, then done. */
class Job {
  /** Tokens produced and not yet taken by the consumer. */
  readonly out: EngineToken[] = [];
  finish: EngineFinish | null = null;
  error: unknown = null;
  cancelled = false;
  slot: KVCache | null = null;
  /** The last token, fed to the next step. */
  last = -1;
  produced = 0;
  readonly history: number[];
  readonly counts = new Map<number, number>();
  readonly sampler: Sampler | null;
  readonly stops: Set<number>;
  private wake: (() => void) | null = null;

  constructor(readonly req: EngineRequest) {
    this.history = [...req.prompt];
    const o = req.sampling ?? {};
    this.sampler = isSampling(o) || o.repetitionPenalty !== undefined ? new Sampler(o) : null;
    this.stops = new Set(req.stopTokenIds ?? []);
  }

  get done(): boolean {
    return this.finish !== null || this.error !== null || this.cancelled;
  }

  /** The consumer waits here for tokens or the end. */
  waitForNews(): Promise<void> {
    return new Promise((r) => (this.wake = r));
  }

  notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}

const yieldToEventLoop = () => new Promise<void>((r) => setTimeout(r, 0));

export class Engine {
  readonly maxBatch: number;
  readonly maxQueue: number;
  readonly ctx: number;
  readonly kvDtype: KVDType;
  private readonly free: KVCache[];
  private readonly queue: Job[] = [];
  private active: Job[] = [];
  private running = false;
  private draining: Promise<void> | null = null;
  private idle: (() => void) | null = null;
  private steps = 0;
  private rows = 0;
  private readonly decodable: number;
  private readonly pollMs: number;

  constructor(
    readonly model: DecoderModel,
    opts: EngineOptions = {},
  ) {
    const d = model.dims;
    const int = (name: string, v: number, min: number) => {
      if (!Number.isInteger(v) || v < min) throw new Error(`wasm-lm: ${name} = ${v} must be an integer ≥ ${min}`);
      return v;
    };
    this.maxBatch = opts.batching === false ? 1 : int("maxBatch", opts.maxBatch ?? 8, 1);
    this.maxQueue = int("maxQueue", opts.maxQueue ?? 64, 0);
    this.ctx = int("ctx", opts.ctx ?? Math.min(d.maxPositions, 2048), 1);
    if (this.ctx > d.maxPositions) throw new Error(`wasm-lm: ctx = ${this.ctx} exceeds the model's ${d.maxPositions} positions`);
    this.kvDtype = kvDtypeOf(opts.kvDtype);
    this.decodable = Math.min(d.V, opts.decodable ?? d.V);
    this.pollMs = opts.pollMs ?? (inWorkers() ? 1 : 0);
    if (!(this.pollMs >= 0 && Number.isFinite(this.pollMs))) throw new Error(`wasm-lm: pollMs = ${opts.pollMs} must be a number ≥ 0`);
    // Every slot reserved now: serving never grows memory, and slots are reused, never released.
    this.free = Array.from({ length: this.maxBatch }, () => model.createCache(1, this.ctx, { kvDtype: this.kvDtype }));
  }

  get stats(): EngineStats {
    return {
      active: this.active.length,
      queued: this.queue.length,
      maxBatch: this.maxBatch,
      maxQueue: this.maxQueue,
      ctx: this.ctx,
      kvDtype: this.kvDtype,
      steps: this.steps,
      rows: this.rows,
    };
  }

  /**
   * Queue a request at once (QueueFullError when every slot is busy and the queue is full; an
   * Error for a bad prompt or option) and stream its tokens; the iterator returns the finish
   * reason. Leaving the iteration early (return()) or aborting req.signal cancels it.
   */
  generate(req: EngineRequest): AsyncGenerator<EngineToken, EngineFinish> {
    if (this.draining) throw new EngineClosedError();
    this.check(req);
    if (req.signal?.aborted) throw req.signal.reason ?? new DOMException("aborted", "AbortError");
    // Queued requests wait for slots: room for as many as there are free slots, plus maxQueue.
    if (this.queue.length >= this.free.length + this.maxQueue) throw new QueueFullError(1);
    const job = new Job(req);
    this.queue.push(job);
    const onAbort = () => this.cancel(job);
    req.signal?.addEventListener("abort", onAbort, { once: true });
    // The consumer's first next() runs the step that admits it (or waits for the running one).
    return this.stream(job, onAbort);
  }

  private async *stream(job: Job, onAbort: () => void): AsyncGenerator<EngineToken, EngineFinish> {
    try {
      for (;;) {
        while (job.out.length) yield job.out.shift()!;
        if (job.error !== null) throw job.error;
        if (job.cancelled) throw job.req.signal?.reason ?? new DOMException("generation cancelled", "AbortError");
        if (job.finish) return job.finish;
        if (!this.running) await this.step();
        else if (this.pollMs > 0) await new Promise<void>((r) => setTimeout(r, this.pollMs));
        else await job.waitForNews();
      }
    } finally {
      job.req.signal?.removeEventListener("abort", onAbort);
      if (!job.done) this.cancel(job);
    }
  }

  /** Stop accepting requests and resolve once every queued and active one has finished. */
  drain(): Promise<void> {
    this.draining ??= this.queue.length || this.active.length ? new Promise<void>((r) => (this.idle = r)) : Promise.resolve();
    return this.draining;
  }

  private check(req: EngineRequest): void {
    const V = this.model.dims.V;
    const p = req.prompt;
    if (!Array.isArray(p) || p.length === 0) throw new Error("wasm-lm: the prompt must be a non-empty array of token ids");
    if (p.length > this.ctx) throw new Error(`wasm-lm: the prompt has ${p.length} tokens, more than the context of ${this.ctx}`);
    for (const id of p) {
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`wasm-lm: token id ${id} is outside the vocabulary [0, ${V})`);
    }
    if (!Number.isInteger(req.maxTokens) || req.maxTokens < 0)
      throw new Error(`wasm-lm: maxTokens = ${req.maxTokens} must be an integer ≥ 0`);
    validateSampling(req.sampling ?? {});
    for (const k of ["presencePenalty", "frequencyPenalty"] as const) {
      const v = req[k];
      if (v !== undefined && !(Number.isFinite(v) && v >= -2 && v <= 2)) throw new Error(`wasm-lm: ${k} = ${v} must be in [-2, 2]`);
    }
    if (req.topLogprobs !== undefined && !(Number.isInteger(req.topLogprobs) && req.topLogprobs >= 0 && req.topLogprobs <= 20)) {
      throw new Error(`wasm-lm: topLogprobs = ${req.topLogprobs} must be an integer in [0, 20]`);
    }
  }

  private cancel(job: Job): void {
    if (job.done) return;
    job.cancelled = true;
    const q = this.queue.indexOf(job);
    if (q >= 0) this.queue.splice(q, 1);
    // An active job leaves the batch now, or after the step running now (which may hold its slot).
    const a = this.running ? -1 : this.active.indexOf(job);
    if (a >= 0) {
      this.active.splice(a, 1);
      this.retire(job);
    }
    job.notify();
    if (this.draining && !this.running && !this.queue.length && !this.active.length) this.idle?.();
  }

  /** Free a finished or cancelled job's slot. */
  private retire(job: Job): void {
    if (job.slot) {
      this.free.push(job.slot);
      job.slot = null;
    }
    job.notify();
  }

  /**
   * One step of the loop: waiting requests join (their prompts prefilled alone), finished ones
   * leave, then one decode pass for the batch. There is no free-running loop: a consumer waiting
   * for its next token runs the step when none is running, so every step happens while some
   * request that wants tokens is alive — which edge runtimes (workerd) require, since they cancel
   * the timers and I/O of a request once it has ended.
   */
  private async step(): Promise<void> {
    this.running = true;
    try {
      // Let requests arrive, cancel and read their tokens before the step.
      await yieldToEventLoop();
      while (this.queue.length && this.free.length) {
        const job = this.queue.shift()!;
        job.slot = this.free.pop()!;
        job.slot.clear();
        try {
          if (job.req.maxTokens === 0) {
            job.finish = "length";
          } else {
            const r = await this.model.forwardAsync([job.req.prompt], { cache: job.slot, logits: "last" });
            this.choose(job, r.logits);
          }
        } catch (e) {
          job.error = e;
        }
        if (job.done) this.retire(job);
        else this.active.push(job);
      }
      this.active = this.active.filter((j) => this.keep(j));
      if (this.active.length) {
        const batch = this.active;
        try {
          const r = await this.model.forwardAsync(
            batch.map((j) => [j.last]),
            { caches: batch.map((j) => j.slot!), logits: "last" },
          );
          this.steps++;
          this.rows += batch.length;
          const V = this.model.dims.V;
          batch.forEach((j, b) => {
            if (!j.done) this.choose(j, r.logits.subarray(b * V, (b + 1) * V));
          });
        } catch (e) {
          for (const j of batch) j.error = e;
        }
        this.active = this.active.filter((j) => this.keep(j));
      }
    } finally {
      this.running = false;
      // Wake every waiting consumer: those with tokens take them; one of the rest runs the next step.
      for (const j of [...this.active, ...this.queue]) j.notify();
      if (this.draining && !this.queue.length && !this.active.length) this.idle?.();
    }
  }

  /** Whether a job stays in the batch (a done one leaves and frees its slot). */
  private keep(job: Job): boolean {
    if (!job.done) return true;
    this.retire(job);
    return false;
  }

  /** Choose a job's next token from its logits row; finish it on a stop id, maxTokens or a full slot. */
  private choose(job: Job, row: Float32Array): void {
    const logits = row.slice();
    if (this.decodable < logits.length) logits.fill(-Infinity, this.decodable);
    // Penalties first (repetition as transformers', then OpenAI's presence and frequency), then the
    // log-probabilities (before temperature, as generate reports them), then the choice.
    const { presencePenalty: pp = 0, frequencyPenalty: fp = 0 } = job.req;
    const rp = job.req.sampling?.repetitionPenalty;
    if (rp !== undefined) applyRepetitionPenalty(logits, job.history, rp);
    if (pp || fp) for (const [id, n] of job.counts) logits[id] -= pp + fp * n;
    const k = job.req.topLogprobs;
    const lp = k !== undefined ? logSoftmax(logits) : null;
    const id = job.sampler ? job.sampler.pick(logits) : argmax(logits);
    const tok: EngineToken = { id };
    if (lp) {
      tok.logprob = lp[id];
      if (k! > 0) tok.top = topIds(lp, k!).map((t) => ({ id: t, logprob: lp[t] }));
    }
    job.history.push(id);
    job.counts.set(id, (job.counts.get(id) ?? 0) + 1);
    job.produced++;
    job.last = id;
    job.out.push(tok);
    if (job.stops.has(id)) job.finish = "stop";
    else if (job.produced >= job.req.maxTokens || job.slot!.length >= this.ctx) job.finish = "length";
    job.notify();
  }
}
