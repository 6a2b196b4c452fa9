// Every network path goes through here: hub downloads into the Hugging Face cache (formats/hub.ts,
// Node), URL loads with the Cache API (web.ts) and HTTP range reads (formats/ranged.ts). One fetch,
// one retry policy, one error text, one body reader, one progress event. Platform-neutral: fetch,
// streams and timers only, so it runs wherever web.ts does.
//
//   send          one fetch: a network failure is a transient HttpError naming the URL; an abort, the signal's reason
//   withRetries   the retry policy, below
//   statusError   a failed status as one line: status, URL (secrets redacted), the hub's x-error-code / x-error-message
//   readBody      a body into memory: one buffer sized by Content-Length, or a caller's (BYOB); or none past `max`
//   readChunks    a body chunk by chunk, to a sink (the hub writes a file and hashes it)
//   bodyStream    a body as a counted stream (Cache.put)
//   Progress      the one progress event, at most one per PROGRESS_MS per file, then a last one
//
// The retry policy. Retried: a connection that fails or drops mid-body, HTTP 408, 429 and 5xx (and
// what a caller marks `transient`, such as a short body). Never another 4xx. RETRIES more tries
// after the first unless told otherwise. Before each, the server's Retry-After (seconds or an HTTP
// date) when it sends one, at most MAX_RETRY_AFTER_MS; else BACKOFF_MS · 2^n with jitter (half to
// all of it), at most MAX_BACKOFF_MS. An aborted signal ends it at once, during a pause too.

import { errorText, oneLine } from "./formats/types.js";

/** Tries after the first, by default. */
export const RETRIES = 3;
const BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 8_000;
/** A longer Retry-After is cut to this: the try after it may still succeed, or fail with the server's reason. */
const MAX_RETRY_AFTER_MS = 30_000;
/** Progress events of one file are at least this far apart (a pause in the body still gets its latest). */
const PROGRESS_MS = 100;

/** A failed request: HTTP status, network, or a body that broke off. */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(
    message: string,
    readonly status?: number,
    /** Worth another try (see the retry policy). */
    readonly transient = false,
    /** The server's Retry-After, capped. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** What withRetries reads on an error: HttpError has both; callers' own errors may too. */
export interface Retryable {
  transient?: boolean;
  retryAfterMs?: number;
}

export function isTransient(e: unknown): boolean {
  return typeof e === "object" && e !== null && (e as Retryable).transient === true;
}

/** 408 Request Timeout, 429 Too Many Requests and 5xx; never another 4xx. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status <= 599);
}

/** Retry-After as milliseconds from `now` (delay-seconds or an HTTP date), capped; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  const v = header?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Math.min(Number(v) * 1000, MAX_RETRY_AFTER_MS);
  const at = /GMT$/i.test(v) ? Date.parse(v) : NaN;
  return Number.isNaN(at) ? undefined : Math.min(Math.max(0, at - now), MAX_RETRY_AFTER_MS);
}

/** The pause before retry `n` (0-based) when the server names none: exponential, with jitter. */
export function backoffMs(n: number, random = Math.random): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, BACKOFF_MS * 2 ** n);
  return ceiling / 2 + (random() * ceiling) / 2;
}

/** Waits `ms`; rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export interface RetryOptions {
  /** Tries after the first (default RETRIES). */
  retries?: number;
  /** Stops the tries and the pauses between them. */
  signal?: AbortSignal;
  /** Before each pause: what failed, which retry comes (1-based) and after how long. */
  onRetry?: (e: unknown, retry: number, ms: number) => void;
}

/**
 * `attempt()`, tried again under the retry policy while it fails transiently. The error that
 * ends it says how many tries there were ("(after 3 tries)") when there was more than one.
 */
export async function withRetries<T>(attempt: () => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const retries = opts.retries ?? RETRIES;
  for (let i = 0; ; i++) {
    opts.signal?.throwIfAborted();
    try {
      return await attempt();
    } catch (e) {
      opts.signal?.throwIfAborted();
      if (!isTransient(e) || i >= retries) {
        if (i > 0 && e instanceof Error) e.message += ` (after ${i + 1} tries)`;
        throw e;
      }
      const ms = (e as Retryable).retryAfterMs ?? backoffMs(i);
      opts.onRetry?.(e, i + 1, ms);
      await sleep(ms, opts.signal);
    }
  }
}

// ---- Error text ----

const SECRET_PARAM = /token|sig|key|credential|auth|password|secret|session|policy/i;
const HF_TOKEN = /hf_[A-Za-z0-9]{6,}/g;

/**
 * A URL for a message: no user:password, no fragment, the values of query parameters that may be
 * secrets (token, signature, key, credential, …; a CDN's signed URL has several) and anything
 * shaped like a hub token replaced by "***"; one line.
 */
export function redactUrl(url: string): string {
  if (!/[@?#]|hf_/.test(url)) return oneLine(url);
  let out = url;
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    u.hash = "";
    for (const k of new Set(u.searchParams.keys())) if (SECRET_PARAM.test(k)) u.searchParams.set(k, "***");
    out = u.href;
  } catch {
    // not a URL: only the token pattern applies
  }
  return oneLine(out.replace(HF_TOKEN, "hf_***"));
}

/** `text` (an error's message, say) with every URL in it redacted (see redactUrl); one line. */
export function redactUrls(text: string): string {
  return oneLine(text.replace(/\b[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"'<>]+/g, (u) => redactUrl(u)).replace(HF_TOKEN, "hf_***"));
}

/** "HTTP 503 Service Unavailable" (the reason phrase when there is one). */
export function statusLine(res: Response): string {
  const text = oneLine(res.statusText ?? "");
  return `HTTP ${res.status}${text ? " " + text : ""}`;
}

/**
 * A failed status as one line: "HTTP 503 Service Unavailable fetching <what> (<x-error-code>:
 * <x-error-message>)". `what` is a URL (redacted here) or a part of one ("bytes 0-99").
 * Transient for 408, 429 and 5xx, with the server's Retry-After.
 */
export function statusError(res: Response, what: string): HttpError {
  const hub = [res.headers.get("x-error-code"), res.headers.get("x-error-message")].filter((s) => s).map((s) => oneLine(s!, 300));
  const retry = isRetryableStatus(res.status);
  return new HttpError(
    `${statusLine(res)} fetching ${redactUrl(what)}${hub.length ? ` (${hub.join(": ")})` : ""}`,
    res.status,
    retry,
    retry ? retryAfterMs(res.headers.get("retry-after")) : undefined,
  );
}

/** Lets a response go without reading its body. */
export async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}

/**
 * fetch(url, init): the one place a request is made. A network failure is a transient
 * HttpError "network error fetching <what>: <cause>"; an abort rejects with the signal's reason.
 */
export async function send(url: string, init: RequestInit = {}, opts: { fetch?: typeof fetch; what?: string } = {}): Promise<Response> {
  init.signal?.throwIfAborted();
  const doFetch = opts.fetch ?? globalThis.fetch;
  try {
    return await doFetch(url, init);
  } catch (e) {
    init.signal?.throwIfAborted();
    // (The cause may quote the URL: undici's refusal of one with credentials does.)
    throw new HttpError(`network error fetching ${redactUrl(opts.what ?? url)}: ${redactUrls(errorText(e))}`, undefined, true);
  }
}

// ---- Progress ----

/** Download progress of one file: the one event shape of hub downloads, URL loads and the Cache API. */
export interface DownloadProgress {
  /** The file's name in the model directory (e.g. "model.safetensors"). */
  file: string;
  /** Bytes so far (a resumed hub download counts the part already on disk). */
  loaded: number;
  /** The expected size, 0 while the server has not said; a file's last event has total = loaded. */
  total: number;
  /** True when the file is read from a cache rather than the network. */
  cached: boolean;
  /** @deprecated The same as `loaded` (FetchProgress's name for it until the events were unified). */
  done: number;
}

/**
 * The progress of one file, reported as DownloadProgress: the first count at once, then at most one
 * event per PROGRESS_MS (the latest count, also when the body pauses), and `end()` the last one.
 * An exception from a deferred report is thrown by the next `add` or `end`.
 */
export class Progress {
  private loaded: number;
  private total: number;
  private readonly cached: boolean;
  private last = -Infinity;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private failed: { e: unknown } | undefined;

  constructor(
    readonly file: string,
    private readonly report: ((p: DownloadProgress) => void) | undefined,
    opts: { total?: number; loaded?: number; cached?: boolean } = {},
  ) {
    this.loaded = opts.loaded ?? 0;
    this.total = opts.total ?? 0;
    this.cached = opts.cached ?? false;
  }

  add(n: number): void {
    this.rethrow();
    this.loaded += n;
    if (this.report && !this.timer) this.due();
  }

  /** Reports now if the last event is PROGRESS_MS old, else once it is (a timer may fire early: it checks again). */
  private due(): void {
    const wait = this.last + PROGRESS_MS - Date.now();
    if (wait <= 0) return this.emit();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      try {
        this.due();
      } catch (e) {
        this.failed ??= { e };
      }
    }, wait);
  }

  /** Drops a deferred event (the body ended, or failed). */
  pause(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The file is complete: its last event, with total = loaded. */
  end(): void {
    this.pause();
    this.rethrow();
    this.total = this.loaded;
    this.emit();
  }

  private emit(): void {
    this.last = Date.now();
    const { file, loaded, total, cached } = this;
    this.report?.({ file, loaded, total, cached, done: loaded });
  }

  private rethrow(): void {
    if (this.failed) throw this.failed.e;
  }
}

// ---- Bodies ----

export interface BodyOptions {
  /** Names the body in errors: "connection lost downloading <what> after N bytes". */
  what: string;
  signal?: AbortSignal;
  progress?: Progress;
}

/** Content-Length, and whether the body may be longer (decoded from a compressed one). */
export function declaredLength(res: Response): { total?: number; mayBeLonger: boolean } {
  const length = res.headers.get("content-length");
  const encoding = res.headers.get("content-encoding");
  return {
    total: length !== null && /^\d+$/.test(length) ? Number(length) : undefined,
    // A compressed body arrives decoded, longer than its Content-Length. Cross-origin, the
    // Content-Encoding header may be hidden (it is not CORS-safelisted), so assume it may be.
    mayBeLonger: (encoding !== null && encoding !== "identity") || res.type === "cors",
  };
}

/** Refuses `n` bytes of a body whose Content-Length said otherwise (transient: the next try may get it whole). */
export function checkLength(what: string, n: number, d: { total?: number; mayBeLonger: boolean }): void {
  if (d.total !== undefined && n !== d.total && !(n > d.total && d.mayBeLonger)) {
    throw new HttpError(`incomplete download of ${redactUrl(what)}: ${n} bytes, Content-Length ${d.total}`, undefined, true);
  }
}

/** What a failed body read becomes: the signal's reason, or a transient HttpError. */
function lost(e: unknown, opts: BodyOptions, n: number): unknown {
  if (opts.signal?.aborted) return opts.signal.reason;
  return new HttpError(
    `connection lost downloading ${redactUrl(opts.what)} after ${n} bytes: ${redactUrls(errorText(e))}`,
    undefined,
    true,
  );
}

/**
 * Reads the body chunk by chunk, giving each to `each` (which may return false to stop: the rest
 * is cancelled), counting progress. Returns the bytes read.
 */
export async function readChunks(res: Response, opts: BodyOptions, each: (chunk: Uint8Array) => unknown): Promise<number> {
  const reader = res.body?.getReader();
  let n = 0;
  try {
    for (;;) {
      if (!reader) return n;
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        throw lost(e, opts, n);
      }
      if (r.done) return n;
      if ((await each(r.value)) === false) {
        await reader.cancel().catch(() => undefined);
        return n;
      }
      n += r.value.length;
      opts.progress?.add(r.value.length);
    }
  } finally {
    opts.progress?.pause();
  }
}

/**
 * The whole body in memory, or undefined as soon as it is longer than `max` (by Content-Length or
 * by its bytes). The bytes go straight into one buffer — `into` when it holds `max` bytes (through
 * a BYOB reader where the body is a byte stream), else one sized by `max` or Content-Length — so a
 * large body is not copied again; a body past that size continues in chunks, joined at the end.
 */
export async function readBody(res: Response, opts: BodyOptions & { max?: number; into?: Uint8Array }): Promise<Uint8Array | undefined> {
  const { max } = opts;
  const { total } = declaredLength(res);
  if (max !== undefined && total !== undefined && total > max && !res.headers.get("content-encoding")) return undefined;
  const into = max !== undefined && opts.into && opts.into.length >= max ? opts.into : undefined;
  if (into && res.body && !(typeof SharedArrayBuffer !== "undefined" && into.buffer instanceof SharedArrayBuffer)) {
    let byob: ReadableStreamBYOBReader | undefined;
    try {
      byob = res.body.getReader({ mode: "byob" });
    } catch {
      /* not a byte stream: read its chunks below */
    }
    if (byob) return readInto(byob, into, max!, opts);
  }
  let buf = into ? into.subarray(0, max) : allocate(max ?? total);
  const chunks: Uint8Array[] = [];
  let n = 0;
  let tooLong = false;
  await readChunks(res, opts, (c) => {
    if (max !== undefined && n + c.length > max) {
      tooLong = true;
      return false;
    }
    if (buf && n + c.length <= buf.length) buf.set(c, n);
    else {
      if (buf) chunks.push(buf.subarray(0, n));
      buf = null;
      chunks.push(c);
    }
    n += c.length;
  });
  if (tooLong) return undefined;
  if (buf) return buf.subarray(0, n);
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** A buffer of `size` bytes, or null when there is no size, it is beyond what wasm32 could hold, or it cannot be allocated. */
function allocate(size: number | undefined): Uint8Array | null {
  try {
    return size && size <= 2 ** 32 ? new Uint8Array(size) : null;
  } catch {
    return null;
  }
}

/**
 * readBody through a BYOB reader: the stream writes straight into `into`'s memory, so no chunk is
 * allocated per read (a stream of layer reads then leaves no garbage: workerd, Chromium and Node
 * fetch bodies are byte streams). Each read moves the memory to a new ArrayBuffer, detaching the
 * old one: the view returned is over where it ended up.
 */
async function readInto(
  reader: ReadableStreamBYOBReader,
  into: Uint8Array,
  max: number,
  opts: BodyOptions,
): Promise<Uint8Array | undefined> {
  let buffer = into.buffer as ArrayBuffer;
  const start = into.byteOffset;
  let n = 0;
  try {
    for (;;) {
      const room = max - n;
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        // Once `max` bytes are in, one more byte read (into a byte of its own) tells "done" from "too long".
        r = await reader.read(room > 0 ? new Uint8Array(buffer, start + n, room) : new Uint8Array(1));
      } catch (e) {
        throw lost(e, opts, n);
      }
      if (room > 0 && r.value) buffer = r.value.buffer as ArrayBuffer;
      if (r.done) return new Uint8Array(buffer, start, n);
      if (room === 0) {
        await reader.cancel();
        return undefined;
      }
      n += r.value.byteLength;
      opts.progress?.add(r.value.byteLength);
    }
  } finally {
    opts.progress?.pause();
  }
}

/**
 * The body as a stream of its own (to hand to Cache.put), counted for progress. At its end
 * `check(n)` may refuse it, which errors the stream. A consumer may reject with an error of its
 * own, so what failed the stream is kept in `error`.
 */
export function bodyStream(
  res: Response,
  opts: BodyOptions,
  check?: (n: number) => void,
): { stream: ReadableStream<Uint8Array>; error?: unknown } {
  const reader = res.body?.getReader();
  let n = 0;
  const out: { stream: ReadableStream<Uint8Array>; error?: unknown } = {
    stream: new ReadableStream<Uint8Array>({
      async pull(c) {
        try {
          let r: ReadableStreamReadResult<Uint8Array> = { done: true, value: undefined };
          try {
            if (reader) r = await reader.read();
          } catch (e) {
            throw lost(e, opts, n);
          }
          if (r.done) {
            opts.progress?.pause();
            check?.(n);
            return c.close();
          }
          n += r.value.length;
          opts.progress?.add(r.value.length);
          c.enqueue(r.value);
        } catch (e) {
          opts.progress?.pause();
          out.error = e;
          throw e;
        }
      },
      async cancel(reason) {
        opts.progress?.pause();
        await reader?.cancel(reason);
      },
    }),
  };
  return out;
}
