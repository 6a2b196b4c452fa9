// HTTP plumbing of the server, on the fetch API only (Request, Response, ReadableStream,
// crypto.subtle): errors in OpenAI's shape, a bounded and timed body read, the API-key check and
// server-sent events. Runs unchanged under Node, Deno, Bun and workerd.

/** An error that becomes an HTTP response: OpenAI's {"error": {message, type, param, code}}. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  get body() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const invalid = (param: string | null, message: string, code: string | null = null) =>
  new ApiError(400, message, "invalid_request_error", param, code);

export function jsonResponse(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

export function errorResponse(e: ApiError): Response {
  return jsonResponse(e.status, e.body, e.headers);
}

/**
 * The body as bytes, refused with 413 past maxBytes — counted chunk by chunk as it arrives (and
 * from Content-Length before reading), so an oversized body is never buffered whole — and with
 * 408 when it has not all arrived within timeoutMs.
 */
export async function readBody(request: Request, maxBytes: number, timeoutMs: number): Promise<Uint8Array> {
  // The body is left unread: the client must not send its next request on this connection.
  const close = { connection: "close" };
  const tooLarge = () =>
    new ApiError(
      413,
      `The request body is larger than this server's limit of ${maxBytes} bytes.`,
      "invalid_request_error",
      null,
      "request_too_large",
      close,
    );
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) throw tooLarge();
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ApiError(
            408,
            `The request body did not arrive within ${timeoutMs / 1000} s.`,
            "invalid_request_error",
            null,
            "request_timeout",
            close,
          ),
        ),
      timeoutMs,
    );
  });
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const r = await Promise.race([reader.read(), timeout]);
      if (r.done) break;
      size += r.value.byteLength;
      if (size > maxBytes) throw tooLarge();
      chunks.push(r.value);
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    if (e instanceof ApiError) throw e;
    // The client went away (or sent a broken body) while we read.
    throw new ApiError(
      400,
      "The request body could not be read (the connection was closed or reset).",
      "invalid_request_error",
      null,
      "body_read_error",
      close,
    );
  } finally {
    clearTimeout(timer);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** The body parsed as a JSON object (415 for another declared media type, 400 for anything not a JSON object). */
export async function readJsonObject(request: Request, maxBytes: number, timeoutMs: number): Promise<Record<string, unknown>> {
  const type = request.headers.get("content-type");
  // Media types are case-insensitive; parameters (charset) may follow. No type at all is read as JSON.
  if (type !== null && !/^\s*application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type)) {
    throw new ApiError(
      415,
      `Unsupported Content-Type '${type.slice(0, 100)}': send application/json.`,
      "invalid_request_error",
      null,
      "unsupported_media_type",
    );
  }
  const bytes = await readBody(request, maxBytes, timeoutMs);
  if (bytes.byteLength === 0) throw invalid(null, "The request body is empty: send a JSON object.");
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw invalid(null, "The request body is not valid UTF-8.");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw invalid(null, `The request body is not valid JSON: ${(e as Error).message.slice(0, 200)}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw invalid(null, "The request body must be a JSON object.");
  }
  return value as Record<string, unknown>;
}

/**
 * Whether `Authorization: Bearer <key>` carries the key. Compares SHA-256 digests byte by byte
 * without an early exit, so the time taken tells nothing about the key (not even its length).
 */
export async function bearerMatches(request: Request, expectedDigest: Promise<Uint8Array>): Promise<boolean> {
  const header = request.headers.get("authorization") ?? "";
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  const given = await sha256(m ? m[1] : "");
  const want = await expectedDigest;
  let diff = m ? 0 : 1;
  for (let i = 0; i < want.length; i++) diff |= want[i] ^ given[i];
  return diff === 0;
}

export async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/**
 * A text/event-stream of `data: <json>` events from an async generator, then `data: [DONE]`.
 * Pulled: the next event is computed when the client has taken the previous one. A failure mid-way
 * becomes one `data: {"error": ...}` event. When the consumer cancels (the client disconnected),
 * onCancel runs and the generator is closed, so its `finally` blocks release what it holds.
 */
export function sseResponse(
  events: AsyncGenerator<unknown, void>,
  toError: (e: unknown) => ApiError,
  onCancel: () => void,
  headers: Record<string, string> = {},
): Response {
  const encoder = new TextEncoder();
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const r = await events.next();
        if (r.done) {
          controller.enqueue(encoder.encode("data: [DONE]\n\n"));
          controller.close();
        } else {
          controller.enqueue(encoder.encode(`data: ${JSON.stringify(r.value)}\n\n`));
        }
      } catch (e) {
        if (cancelled) return; // the generation was stopped because nobody is listening
        try {
          controller.enqueue(encoder.encode(`data: ${JSON.stringify(toError(e).body)}\n\n`));
          controller.close();
        } catch {
          /* cancelled meanwhile: nobody to tell */
        }
      }
    },
    async cancel() {
      cancelled = true;
      onCancel();
      await events.return(undefined);
    },
  });
  return new Response(body, {
    status: 200,
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", ...headers },
  });
}
