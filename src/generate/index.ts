// Text generation on an DecoderModel: prefill the prompt into a KV cache, then one token at a time.
// Logits are computed only for the positions that need them (the last of each sequence).
import { kvDtypeOf, type DecoderModel, type KVDType } from "../models/decoder.js";
import { TextStream } from "./text.js";
import { applyRepetitionPenalty, argmax, logSoftmax, Sampler, topIds, validateSampling, type SamplingOptions } from "./sampling.js";

export { Sampler, argmax, logSoftmax, topIds, type SamplingOptions } from "./sampling.js";

/** What generation needs from a tokenizer. */
export interface TextCodec {
  encode(text: string): number[];
  decode(ids: number[]): string;
  /** Ids the tokenizer can decode (OPT's 50265; the model's lm_head has 50272 rows). */
  readonly vocabSize?: number;
}

export interface GenerateOptions extends SamplingOptions {
  /** New tokens at most (default 32). */
  maxNewTokens?: number;
  /** Stop when one of these ids is produced (default: the config's eos_token_id). */
  stopTokenIds?: number[];
  /** Generate past EOS (the stop ids are then only stopTokenIds given explicitly). */
  ignoreEos?: boolean;
  /** Stop when the generated text contains one of these strings (the text is cut before it). */
  stopStrings?: string[];
  signal?: AbortSignal;
  /**
   * When the prompt and the new tokens do not fit in the model's context: error if the prompt alone
   * does not fit (default), or keep the prompt's last max_position_embeddings − maxNewTokens tokens.
   */
  truncate?: boolean;
  /**
   * Return each new token's log-probability (0), and with N > 0 the N most likely tokens' too
   * (at most 20) — OpenAI's `logprobs`. Taken from the logits after the repetition penalty and
   * before temperature, top-k and top-p, as the server reports them.
   */
  logprobs?: number;
  /**
   * How long (ms) a `streamGenerate` iterator may go unread while another call waits for the model
   * (default 10 000; Infinity: for ever). Past that, the waiting call gets the model: this
   * generation's KV cache is released and the iterator's next `next()` throws. Unread with nobody
   * waiting, it keeps the model and resumes when read.
   */
  leaseMs?: number;
  /**
   * How the generation's KV cache holds keys and values: "f32" (default) or "f16" (half the
   * memory and half the bytes read per new token; each key and value rounded to a half).
   */
  kvDtype?: KVDType;
}

/** A token id with its log-probability. */
export interface TokenLogprob {
  id: number;
  logprob: number;
}

/** One new token's log-probability and the most likely alternatives, largest first (OpenAI's shape, ids for tokens). */
export interface TokenLogprobs extends TokenLogprob {
  top_logprobs: TokenLogprob[];
}

export interface Timings {
  prefill_ms: number;
  decode_ms_per_token: number;
  total_ms: number;
  tokens_per_second: number;
}

export type FinishReason = "length" | "eos" | "stop_string" | "context";

export interface GenerateResult {
  input_ids: number[];
  new_tokens: number[];
  text: string;
  finish_reason: FinishReason;
  /** With `logprobs`: one entry per new token. */
  logprobs?: TokenLogprobs[];
  timings: Timings;
}

export interface TokenEvent {
  id: number;
  /** Text that became final with this token ("" while a UTF-8 character is incomplete). */
  text: string;
  /** With `logprobs`: log p(id), and the most likely tokens (empty for logprobs 0). */
  logprob?: number;
  top_logprobs?: TokenLogprob[];
}

const now = () => performance.now();
// Let timers and abort signals run between tokens without the 1 ms floor of setTimeout in Node.
const yieldToEventLoop = () => new Promise<void>((r) => (typeof setImmediate === "function" ? setImmediate(r) : setTimeout(r, 0)));

/** How long a streamGenerate iterator may sit unread while another call waits (GenerateOptions.leaseMs). */
export const DEFAULT_LEASE_MS = 10_000;

/**
 * One generation at a time per model: calls queue instead of interleaving in one KV cache. The
 * running one's lease (set while its consumer holds a token) is told when a call starts waiting.
 */
interface Queue {
  tail: Promise<unknown>;
  waiting: number;
  holder: Lease | null;
}
const queues = new WeakMap<DecoderModel, Queue>();

function queueOf(model: DecoderModel): Queue {
  let q = queues.get(model);
  if (!q) queues.set(model, (q = { tail: Promise.resolve(), waiting: 0, holder: null }));
  return q;
}

async function exclusive<T>(model: DecoderModel, fn: () => Promise<T>): Promise<T> {
  const q = queueOf(model);
  q.waiting++;
  q.holder?.contended();
  const start = () => {
    q.waiting--;
    return fn();
  };
  const run = q.tail.then(start, start);
  q.tail = run.catch(() => undefined);
  return run;
}

/**
 * A running streamGenerate's hold on the model while its consumer has a token and has not asked
 * for the next: after `ms` unread with another call waiting (whichever comes last), `revoke` gives
 * the model up. Nothing is taken from a consumer that is merely slow while nobody waits.
 */
class Lease {
  /** Set once the model was given up: what the iterator's next read throws. */
  revoked: Error | null = null;
  private expired = false;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly queue: Queue,
    private readonly ms: number,
    private readonly revoke: () => void,
  ) {}

  /** The consumer has a token: the model now idles on its behalf. */
  idle(): void {
    this.queue.holder = this;
    if (!Number.isFinite(this.ms)) return;
    this.timer = setTimeout(() => {
      this.expired = true;
      this.contended();
    }, this.ms);
    (this.timer as { unref?: () => void }).unref?.(); // an abandoned iterator does not keep Node running
  }

  /** The consumer asked for the next token. */
  pulled(): void {
    this.end();
    if (this.revoked) throw this.revoked;
  }

  /** Another call waits (or the time ran out): give the model up if both are so. */
  contended(): void {
    if (this.expired && this.queue.waiting > 0) {
      this.giveUp(`was not read for ${this.ms} ms while another call waited for the model (see leaseMs)`);
    }
  }

  /** Release the KV cache and the model now; the iterator's next read throws, saying `why`. */
  giveUp(why: string): void {
    if (this.revoked) return;
    this.revoked = new Error(`wasm-lm: this streamGenerate iterator ${why}: it gave the model up and its generation is over`);
    this.end();
    this.revoke();
  }

  end(): void {
    clearTimeout(this.timer);
    this.expired = false;
    if (this.queue.holder === this) this.queue.holder = null;
  }
}

// An iterator dropped unclosed (no `break`, no return()) gives the model up when the garbage
// collector takes it — whenever that is — if its lease has not already. The held value must not
// reference the iterator; the lease does not.
// (Some edge runtimes have no FinalizationRegistry: there the lease alone does it.)
const dropped =
  typeof FinalizationRegistry === "function"
    ? new FinalizationRegistry<{ lease: Lease | null }>((held) => held.lease?.giveUp("was garbage-collected unclosed"))
    : null;

function checkOptions(o: GenerateOptions): void {
  validateSampling(o);
  kvDtypeOf(o.kvDtype);
  if (o.leaseMs !== undefined && !(typeof o.leaseMs === "number" && o.leaseMs > 0)) {
    throw new Error(`wasm-lm: leaseMs = ${o.leaseMs} must be a number of milliseconds > 0 (Infinity: never)`);
  }
  if (o.maxNewTokens !== undefined && !(Number.isInteger(o.maxNewTokens) && o.maxNewTokens >= 0)) {
    throw new Error(`wasm-lm: maxNewTokens = ${o.maxNewTokens} must be an integer ≥ 0`);
  }
  // An empty stop string would match before the first character: stop at once with no text.
  if (o.stopStrings !== undefined && !(Array.isArray(o.stopStrings) && o.stopStrings.every((s) => typeof s === "string" && s !== ""))) {
    throw new Error("wasm-lm: stopStrings must be an array of non-empty strings");
  }
  if (o.stopTokenIds !== undefined && !(Array.isArray(o.stopTokenIds) && o.stopTokenIds.every(Number.isInteger))) {
    throw new Error("wasm-lm: stopTokenIds must be an array of integer token ids");
  }
  if (o.logprobs !== undefined && !(Number.isInteger(o.logprobs) && o.logprobs >= 0 && o.logprobs <= 20)) {
    throw new Error(`wasm-lm: logprobs = ${o.logprobs} must be an integer in [0, 20]`);
  }
}

function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw signal.reason ?? new DOMException("generation aborted", "AbortError");
}

/** Token-level generation for one prompt: yields each new token as it is chosen. */
async function* tokenLoop(
  model: DecoderModel,
  prompt: number[],
  o: GenerateOptions,
  timings: { prefill: number; decode: number[] },
  decodable: number,
): AsyncGenerator<{ id: number } | TokenLogprobs, FinishReason> {
  const maxNew = o.maxNewTokens ?? 32;
  const ctx = model.dims.maxPositions;
  if (prompt.length === 0) throw new Error("wasm-lm: empty prompt: at least one token id is needed");
  if (prompt.length > ctx)
    throw new Error(
      `wasm-lm: prompt of ${prompt.length} tokens exceeds max_position_embeddings=${ctx} (pass truncate to keep its last tokens)`,
    );
  const stops = new Set(o.stopTokenIds ?? []);
  if (!o.ignoreEos && o.stopTokenIds === undefined) for (const id of model.dims.eos) stops.add(id);
  const sampler = new Sampler(o);
  const room = Math.min(ctx, prompt.length + maxNew);
  const cache = model.createCache(1, room, { kvDtype: o.kvDtype });
  const history = [...prompt];
  try {
    if (maxNew === 0) return "length";
    throwIfAborted(o.signal);
    let t0 = now();
    // One logits array for the whole loop: each step's logits are used up before the next step.
    const logitsOut = new Float32Array(model.dims.V);
    let logits = (await model.forwardAsync([prompt], { cache, logits: "last", logitsOut })).logits;
    timings.prefill = now() - t0;
    for (let n = 0; ; n++) {
      // Rows of the lm_head past the tokenizer's vocabulary (padding rows) can never be printed.
      if (decodable < logits.length) logits.fill(-Infinity, decodable);
      if (o.repetitionPenalty !== undefined) applyRepetitionPenalty(logits, history, o.repetitionPenalty);
      const lp = o.logprobs !== undefined ? logSoftmax(logits) : null;
      const id = sampler.pick(logits);
      history.push(id);
      yield lp ? { id, logprob: lp[id], top_logprobs: topIds(lp, o.logprobs!).map((t) => ({ id: t, logprob: lp[t] })) } : { id };
      if (stops.has(id)) return "eos";
      if (n + 1 >= maxNew) return "length";
      if (cache.length >= room) return "context";
      await yieldToEventLoop();
      throwIfAborted(o.signal);
      t0 = now();
      logits = (await model.forwardAsync([[id]], { cache, logits: "last", logitsOut })).logits;
      timings.decode.push(now() - t0);
    }
  } finally {
    cache.release();
  }
}

function promptIds(codec: TextCodec | undefined, prompt: string | number[]): number[] {
  if (typeof prompt === "string") {
    if (!codec) throw new Error("wasm-lm: a text prompt needs a tokenizer");
    return codec.encode(prompt);
  }
  // (The ids themselves are checked against the vocabulary by the model.)
  if (!Array.isArray(prompt) && !ArrayBuffer.isView(prompt)) {
    const what = prompt === null ? "null" : typeof prompt;
    throw new Error(`wasm-lm: the prompt must be a string or an array of token ids, got ${what}`);
  }
  return Array.from(prompt as ArrayLike<number>);
}

function finishTimings(t: { prefill: number; decode: number[] }, total: number, nNew: number): Timings {
  const decodeMs = t.decode.reduce((a, b) => a + b, 0);
  return {
    prefill_ms: t.prefill,
    decode_ms_per_token: t.decode.length ? decodeMs / t.decode.length : 0,
    total_ms: total,
    tokens_per_second: nNew > 0 && total > 0 ? (nNew / total) * 1000 : 0,
  };
}

/**
 * Stream new tokens as they are generated. The async iterator's return value is the full result.
 * Calls on one model are queued, never interleaved: an iterator holds the model until it finishes
 * or is closed — or, unread for `leaseMs` while another call waits, gives it up (see leaseMs), as
 * it does when the garbage collector takes it unclosed.
 */
export function streamGenerate(
  model: DecoderModel,
  codec: TextCodec | undefined,
  prompt: string | number[],
  o: GenerateOptions = {},
): AsyncGenerator<TokenEvent, GenerateResult> {
  const held: { lease: Lease | null } = { lease: null };
  const it = generation(model, codec, prompt, o, held);
  dropped?.register(it, held);
  return it;
}

async function* generation(
  model: DecoderModel,
  codec: TextCodec | undefined,
  prompt: string | number[],
  o: GenerateOptions,
  held: { lease: Lease | null },
): AsyncGenerator<TokenEvent, GenerateResult> {
  checkOptions(o);
  let input = promptIds(codec, prompt);
  const ctx = model.dims.maxPositions;
  const maxNew = o.maxNewTokens ?? 32;
  if (o.truncate && input.length + maxNew > ctx) {
    // Keep the prompt's end, leaving room for the new tokens (at least one prompt token stays).
    input = input.slice(input.length - Math.max(1, ctx - maxNew));
  }
  // Take our turn in the model's queue, and hold it until this generator finishes.
  let release!: () => void;
  const turn = new Promise<void>((r) => (release = r));
  let started!: () => void;
  const ready = new Promise<void>((r) => (started = r));
  void exclusive(model, () => {
    started();
    return turn;
  });
  await ready;
  const t0 = now();
  const timings = { prefill: 0, decode: [] as number[] };
  const loop = tokenLoop(model, input, o, timings, Math.min(model.dims.V, codec?.vocabSize ?? model.dims.V));
  // Given up while the consumer holds a token: tokenLoop is suspended at its yield, so return()
  // runs its finally now — the KV cache, the arena's top allocation, is released — then the turn.
  const lease = new Lease(queueOf(model), o.leaseMs ?? DEFAULT_LEASE_MS, () => {
    loop.return("length").then(release, (e) => {
      lease.revoked = e as Error; // a cache that cannot be released (see KVCache.release): said on the next read
      release();
    });
  });
  held.lease = lease;
  try {
    const stream = codec ? new TextStream((ids) => codec.decode(ids), o.stopStrings ?? []) : undefined;
    if (o.stopStrings?.length && !codec) throw new Error("wasm-lm: stopStrings need a tokenizer");
    const newTokens: number[] = [];
    const logprobs: TokenLogprobs[] = [];
    let finish: FinishReason = "length";
    for (;;) {
      const r = await loop.next();
      if (r.done) {
        finish = r.value;
        break;
      }
      const tok = r.value;
      newTokens.push(tok.id);
      const text = stream ? stream.push(tok.id) : "";
      lease.idle();
      if ("top_logprobs" in tok) {
        logprobs.push(tok);
        yield { id: tok.id, text, logprob: tok.logprob, top_logprobs: tok.top_logprobs };
      } else {
        yield { id: tok.id, text };
      }
      lease.pulled();
      if (stream?.stopped) {
        finish = "stop_string";
        break;
      }
    }
    const rest = stream?.flush();
    if (rest) {
      lease.idle();
      yield { id: -1, text: rest };
      lease.pulled();
    }
    return {
      input_ids: input,
      new_tokens: newTokens,
      text: stream ? stream.text : "",
      finish_reason: finish,
      ...(o.logprobs !== undefined ? { logprobs } : {}),
      timings: finishTimings(timings, now() - t0, newTokens.length),
    };
  } finally {
    lease.end();
    held.lease = null;
    if (!lease.revoked) {
      try {
        await loop.return("length"); // releases the KV cache however we leave
      } finally {
        release();
      }
    }
  }
}

/** Generate and return the whole result (ids, text, timings). */
export async function generate(
  model: DecoderModel,
  codec: TextCodec | undefined,
  prompt: string | number[],
  o: GenerateOptions = {},
): Promise<GenerateResult> {
  const it = streamGenerate(model, codec, prompt, o);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}

/**
 * Greedy generation for a batch of left-padded prompts (B, T) with an attention mask, as
 * transformers' generate() does it: the new tokens of every row are real (mask 1).
 */
export async function greedyBatch(
  model: DecoderModel,
  ids: number[][],
  attentionMask: number[][],
  maxNewTokens: number,
  opts: { kvDtype?: KVDType } = {},
): Promise<number[][]> {
  const B = ids.length;
  const T = ids[0].length;
  const cache = model.createCache(B, Math.min(model.dims.maxPositions, T + maxNewTokens), { kvDtype: opts.kvDtype });
  try {
    const out: number[][] = ids.map(() => []);
    let logits = (await model.forwardAsync(ids, { cache, attentionMask, logits: "last" })).logits;
    const V = model.dims.V;
    for (let n = 0; n < maxNewTokens; n++) {
      const next = Array.from({ length: B }, (_, b) => argmax(logits, b * V, (b + 1) * V));
      next.forEach((id, b) => out[b].push(id));
      if (n + 1 === maxNewTokens) break;
      logits = (
        await model.forwardAsync(
          next.map((id) => [id]),
          { cache, logits: "last" },
        )
      ).logits;
    }
    return out;
  } finally {
    cache.release();
  }
}
