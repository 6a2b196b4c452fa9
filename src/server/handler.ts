// An OpenAI-compatible HTTP API over the batching engine, as one fetch handler:
// (request: Request) => Promise<Response>. Fetch API only (no node: imports), so the same handler
// serves under node:http (./node.ts), Deno.serve, Bun.serve and a workerd Worker.
//
//   GET  /health                 {"status": "ok", ...engine stats}          (no API key needed)
//   GET  /v1/models              the one model served; GET /v1/models/{id} that model or 404
//   POST /v1/completions         prompt: a string or token ids
//   POST /v1/chat/completions    messages through the tokenizer's chat template
//
// Text is decoded as `generate` decodes it (TextStream), so temperature 0 gives exactly
// `wasm-lm generate`'s text; completions keep special tokens (as generate), chat drops them (as
// streamChat); the stop token that ends a generation is never part of the text. Model-id policy:
// a request's `model` must be the served id, or be left out (there is one model: it is meant).
import { EngineClosedError, QueueFullError, type EngineFinish, type EngineRequest, type EngineStats, type EngineToken } from "./engine.js";
import { ApiError, bearerMatches, errorResponse, invalid, jsonResponse, readJsonObject, sha256, sseResponse } from "./http.js";
import { ChatRequest, CompletionRequest, firstIssue } from "./schema.js";
import { TextStream, type Decode } from "../generate/text.js";
import type { Tokenizer } from "../tokenizer/index.js";
import type { SamplingOptions } from "../generate/sampling.js";
import type { z } from "zod";

export { ApiError, errorResponse } from "./http.js";
// What a server also needs, so that `wasm-lm/server` is enough to build one.
export { Engine, EngineClosedError, QueueFullError } from "./engine.js";
export type { EngineOptions, EngineRequest, EngineStats, EngineToken, EngineFinish } from "./engine.js";

/** What the handler needs of the engine (src/server/engine.ts's Engine has it). */
export interface ServingEngine {
  generate(req: EngineRequest): AsyncGenerator<EngineToken, EngineFinish>;
  readonly stats: EngineStats;
}

/** What the handler needs of the tokenizer (the project's Tokenizer has it). */
export type ServingTokenizer = Pick<Tokenizer, "encode" | "decode" | "encodeChat" | "chatStopTokenIds" | "vocabSize">;

export interface HandlerOptions {
  engine: ServingEngine;
  /** null: only token-id prompts to /v1/completions work (the text of a reply is then ""; its ids are in token_ids). */
  tokenizer: ServingTokenizer | null;
  /** The id shown in /v1/models and in responses, and the only `model` requests may name. */
  modelId: string;
  /** The model's end-of-sequence ids (model.dims.eos): every generation stops at them. */
  eosTokenIds: readonly number[];
  /** Ids that end a chat turn (default: the tokenizer's chatStopTokenIds). */
  chatStopTokenIds?: readonly number[];
  /** Require `Authorization: Bearer <apiKey>` on /v1/*. */
  apiKey?: string;
  /** Largest request body in bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /** Time for a request body to arrive in full, in ms (default 30 s): then 408. */
  bodyTimeoutMs?: number;
  /** Allow cross-origin requests from this origin ("*" for any). */
  cors?: string;
  /** Called with unexpected errors (a 500's cause). Default: console.error. */
  onError?: (error: unknown) => void;
}

export type Handler = (request: Request) => Promise<Response>;

/** The default of max_tokens for completions, as OpenAI's. Chat's default is the rest of the context. */
const COMPLETION_MAX_TOKENS = 16;

export function createHandler(opts: HandlerOptions): Handler {
  checkOptions(opts);
  const maxBody = opts.maxBodyBytes ?? 1 << 20;
  const bodyTimeout = opts.bodyTimeoutMs ?? 30_000;
  const keyDigest = opts.apiKey === undefined ? null : sha256(opts.apiKey);
  const onError = opts.onError ?? ((e: unknown) => console.error("wasm-lm server:", e));
  const created = Math.floor(Date.now() / 1000);
  const cors = corsHeaders(opts.cors);
  const ctx = new GenerationContext(opts, maxBody, bodyTimeout, onError);

  const model = () => ({ id: opts.modelId, object: "model", created, owned_by: "wasm-lm", max_model_len: opts.engine.stats.ctx });
  type Route = Partial<Record<"GET" | "POST", (r: Request) => Promise<Response> | Response>> & { open?: boolean };
  const routes: Record<string, Route> = {
    "/health": { open: true, GET: () => jsonResponse(200, { status: "ok", model: opts.modelId, ...opts.engine.stats }) },
    "/v1/models": { GET: () => jsonResponse(200, { object: "list", data: [model()] }) },
    "/v1/completions": { POST: (r) => ctx.completions(r) },
    "/v1/chat/completions": { POST: (r) => ctx.chat(r) },
  };

  const route = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    let path = url.pathname;
    let r = routes[path];
    if (!r && path.startsWith("/v1/models/")) {
      const id = safeDecode(path.slice("/v1/models/".length));
      r = {
        GET: () => {
          if (id !== opts.modelId) throw modelNotFound(id);
          return jsonResponse(200, model());
        },
      };
      path = "/v1/models/{model}";
    }
    if (!r)
      throw new ApiError(
        404,
        `Unknown route: ${request.method} ${url.pathname.slice(0, 200)}`,
        "invalid_request_error",
        null,
        "unknown_url",
      );
    const allowed = (["GET", "POST"] as const).filter((m) => r[m]);
    const allow = [...allowed, ...(allowed.includes("GET") ? ["HEAD"] : []), ...(cors ? ["OPTIONS"] : [])].join(", ");
    if (request.method === "OPTIONS" && cors) {
      return new Response(null, {
        status: 204,
        headers: {
          "access-control-allow-methods": allow,
          // The official clients send their own x-* headers: allow what the preflight asks for.
          "access-control-allow-headers": request.headers.get("access-control-request-headers") ?? "authorization, content-type",
          "access-control-max-age": "600",
        },
      });
    }
    const method = request.method === "HEAD" ? "GET" : request.method;
    const fn = r[method as "GET" | "POST"];
    if (!fn)
      throw new ApiError(
        405,
        `Method ${request.method} is not allowed on ${path}; allowed: ${allow}.`,
        "invalid_request_error",
        null,
        "method_not_allowed",
        { allow },
      );
    if (keyDigest && !r.open && !(await bearerMatches(request, keyDigest))) {
      const given = request.headers.has("authorization");
      throw new ApiError(
        401,
        given ? "Incorrect API key provided." : "Missing API key: send it as 'Authorization: Bearer <key>'.",
        "invalid_request_error",
        null,
        "invalid_api_key",
        { "www-authenticate": "Bearer" },
      );
    }
    const response = await fn(request);
    return request.method === "HEAD" ? new Response(null, { status: response.status, headers: response.headers }) : response;
  };

  return async (request: Request): Promise<Response> => {
    let response: Response;
    try {
      response = await route(request);
    } catch (e) {
      response = errorResponse(ctx.toApiError(e));
    }
    for (const [k, v] of Object.entries(cors ?? {})) response.headers.set(k, v);
    return response;
  };
}

/** One request's plan: the prompt ids and what the engine and the text decoder need. */
interface Plan {
  prompt: number[];
  /** The prompt as text (for echo), when known. */
  promptText: string | null;
  request: Omit<EngineRequest, "signal">;
  stopIds: Set<number>;
  stopStrings: string[];
  /** null without a tokenizer. */
  decode: Decode | null;
  /** The token string shown in logprobs. */
  tokenText: (id: number) => string;
  /** Logprobs asked for: top alternatives per token (0: only the chosen token's); null: none. */
  logprobs: number | null;
  stream: boolean;
  includeUsage: boolean;
  returnTokenIds: boolean;
}

interface Step {
  token: EngineToken;
  /** Text that became final with this token. */
  piece: string;
  /** Where this token's text starts in the completion (OpenAI's text_offset). */
  offset: number;
}

interface Outcome {
  finish: EngineFinish;
  ids: number[];
  /** The completion's full text (up to a stop string). */
  text: string;
  /** Text held back until the end (a possible stop string's start, an unfinished character). */
  rest: string;
}

class GenerationContext {
  constructor(
    private readonly opts: HandlerOptions,
    private readonly maxBody: number,
    private readonly bodyTimeout: number,
    private readonly onError: (e: unknown) => void,
  ) {}

  private get tokenizer() {
    return this.opts.tokenizer;
  }

  toApiError(e: unknown): ApiError {
    if (e instanceof ApiError) return e;
    if (e instanceof QueueFullError || (e as Error)?.name === "QueueFullError") {
      const seconds = Math.max(1, Math.ceil((e as QueueFullError).retryAfterSeconds ?? 1));
      return new ApiError(429, (e as Error).message.replace(/^wasm-lm: /, ""), "overloaded_error", null, "queue_full", {
        "retry-after": String(seconds),
      });
    }
    if (e instanceof EngineClosedError) {
      return new ApiError(503, e.message.replace(/^wasm-lm: /, ""), "overloaded_error", null, "shutting_down", { "retry-after": "1" });
    }
    this.onError(e);
    return new ApiError(500, "The server had an error while processing the request.", "server_error");
  }

  private async parse<S extends z.ZodType>(request: Request, schema: S): Promise<z.infer<S>> {
    const body = await readJsonObject(request, this.maxBody, this.bodyTimeout);
    const r = schema.safeParse(body);
    if (!r.success) {
      const { param, message } = firstIssue(r.error, body);
      throw invalid(param, message);
    }
    const model = (r.data as { model?: string | null }).model;
    if (model != null && model !== this.opts.modelId) throw modelNotFound(model);
    return r.data;
  }

  async completions(request: Request): Promise<Response> {
    const body = await this.parse(request, CompletionRequest);
    const tok = this.tokenizer;
    const raw =
      Array.isArray(body.prompt) && body.prompt.length === 1 && typeof body.prompt[0] !== "number"
        ? (body.prompt[0] as string | number[])
        : (body.prompt as string | number[]);
    let prompt: number[];
    if (typeof raw === "string") {
      if (!tok) throw invalid("prompt", "This server has no tokenizer: send the prompt as an array of token ids.");
      prompt = tok.encode(raw);
      if (prompt.length === 0) throw invalid("prompt", "The prompt is empty (it encodes to no tokens).");
    } else {
      prompt = raw;
      if (tok) {
        const bad = prompt.findIndex((id) => id >= tok.vocabSize);
        if (bad >= 0)
          throw invalid("prompt", `prompt[${bad}] = ${prompt[bad]} is not a token id of the vocabulary (0..${tok.vocabSize - 1}).`);
      }
    }
    const logprobs = body.logprobs ?? null;
    if (body.echo && logprobs !== null)
      throw invalid("echo", "echo with logprobs is not supported (the prompt's log-probabilities are not computed).");
    const maxTokens = this.maxTokens(prompt, body.max_tokens, "prompt", COMPLETION_MAX_TOKENS);
    const decode: Decode | null = tok ? (ids) => tok.decode(ids) : null;
    const promptText = !body.echo ? null : typeof raw === "string" ? raw : decode ? decode(prompt) : "";
    const plan = this.plan(body, prompt, maxTokens, this.opts.eosTokenIds, decode, logprobs, promptText);
    const id = `cmpl-${randomId()}`;
    const created = Math.floor(Date.now() / 1000);
    const head = { id, object: "text_completion", created, model: this.opts.modelId };
    return this.respond(request, plan, {
      chunks: async function* (steps: AsyncGenerator<Step, Outcome>, usage: () => Usage) {
        const usageNull = plan.includeUsage ? { usage: null } : {};
        if (plan.promptText)
          yield { ...head, choices: [{ index: 0, text: plan.promptText, logprobs: null, finish_reason: null }], ...usageNull };
        let r = await steps.next();
        for (; !r.done; r = await steps.next()) {
          const logprobs = plan.logprobs === null ? null : completionLogprobs([r.value], plan);
          // With return_token_ids every token is a chunk of its own (its text may still be "").
          const ids = plan.returnTokenIds ? { token_ids: [r.value.token.id] } : {};
          if (r.value.piece === "" && logprobs === null && !plan.returnTokenIds) continue;
          yield { ...head, choices: [{ index: 0, text: r.value.piece, logprobs, finish_reason: null, ...ids }], ...usageNull };
        }
        const o = r.value;
        if (o.rest) yield { ...head, choices: [{ index: 0, text: o.rest, logprobs: null, finish_reason: null }], ...usageNull };
        yield { ...head, choices: [{ index: 0, text: "", logprobs: null, finish_reason: o.finish, ...tokenIds(plan, o) }], ...usageNull };
        if (plan.includeUsage) yield { ...head, choices: [], usage: usage() };
      },
      whole: (steps: Step[], o: Outcome, usage: Usage) => ({
        ...head,
        choices: [
          {
            index: 0,
            text: (plan.promptText ?? "") + o.text,
            logprobs: plan.logprobs === null ? null : completionLogprobs(steps, plan),
            finish_reason: o.finish,
            ...tokenIds(plan, o),
          },
        ],
        usage,
      }),
    });
  }

  async chat(request: Request): Promise<Response> {
    const body = await this.parse(request, ChatRequest);
    const tok = this.tokenizer;
    if (!tok) throw invalid("messages", "This server has no tokenizer: chat completions need one (with a chat template).");
    if (body.top_logprobs != null && !body.logprobs) throw invalid("top_logprobs", "top_logprobs needs logprobs: true.");
    // Text parts are joined into one string, as templates expect string content.
    const messages = body.messages.map((m) => ({
      ...m,
      content: typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join(""),
    }));
    let prompt: number[];
    try {
      prompt = tok.encodeChat(messages);
    } catch (e) {
      throw invalid("messages", (e as Error).message);
    }
    if (body.max_tokens != null && body.max_completion_tokens != null && body.max_tokens !== body.max_completion_tokens) {
      throw invalid("max_completion_tokens", "max_tokens and max_completion_tokens differ: give one.");
    }
    const maxTokens = this.maxTokens(prompt, body.max_completion_tokens ?? body.max_tokens, "messages", Infinity);
    const stops = [...(this.opts.chatStopTokenIds ?? tok.chatStopTokenIds), ...this.opts.eosTokenIds];
    const decode: Decode = (ids) => tok.decode(ids, { skipSpecialTokens: true });
    const plan = this.plan(body, prompt, maxTokens, stops, decode, body.logprobs ? (body.top_logprobs ?? 0) : null, null);
    const id = `chatcmpl-${randomId()}`;
    const created = Math.floor(Date.now() / 1000);
    const head = { id, object: "chat.completion.chunk", created, model: this.opts.modelId };
    const usageNull = plan.includeUsage ? { usage: null } : {};
    return this.respond(request, plan, {
      chunks: async function* (steps: AsyncGenerator<Step, Outcome>, usage: () => Usage) {
        yield {
          ...head,
          choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }],
          ...usageNull,
        };
        let r = await steps.next();
        for (; !r.done; r = await steps.next()) {
          const logprobs = plan.logprobs === null ? null : chatLogprobs([r.value], plan);
          if (r.value.piece === "" && logprobs === null) continue;
          yield { ...head, choices: [{ index: 0, delta: { content: r.value.piece }, logprobs, finish_reason: null }], ...usageNull };
        }
        const o = r.value;
        if (o.rest)
          yield { ...head, choices: [{ index: 0, delta: { content: o.rest }, logprobs: null, finish_reason: null }], ...usageNull };
        yield { ...head, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: o.finish, ...tokenIds(plan, o) }], ...usageNull };
        if (plan.includeUsage) yield { ...head, choices: [], usage: usage() };
      },
      whole: (steps: Step[], o: Outcome, usage: Usage) => ({
        ...head,
        object: "chat.completion",
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: o.text, refusal: null },
            logprobs: plan.logprobs === null ? null : chatLogprobs(steps, plan),
            finish_reason: o.finish,
            ...tokenIds(plan, o),
          },
        ],
        usage,
      }),
    });
  }

  /** max_tokens checked against the context (prompt + completion ≤ the engine's slot context). */
  private maxTokens(prompt: number[], asked: number | null | undefined, promptParam: string, byDefault: number): number {
    const ctx = this.opts.engine.stats.ctx;
    const room = ctx - prompt.length;
    if (room < 1)
      throw invalid(
        promptParam,
        `The prompt is ${prompt.length} tokens: it leaves no room for a completion in this server's context of ${ctx} tokens.`,
        "context_length_exceeded",
      );
    if (asked == null) return Math.min(byDefault, room);
    if (asked > room) {
      throw invalid(
        "max_tokens",
        `max_tokens = ${asked} is too large: the prompt is ${prompt.length} tokens and the context is ${ctx} tokens, so at most ${room} new tokens fit.`,
        "context_length_exceeded",
      );
    }
    return asked;
  }

  private plan(
    body: CompletionRequest | ChatRequest,
    prompt: number[],
    maxTokens: number,
    stopIds: readonly number[],
    decode: Decode | null,
    logprobs: number | null,
    promptText: string | null,
  ): Plan {
    const stopStrings = body.stop == null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop;
    if (stopStrings.length && !decode) throw invalid("stop", "stop strings need a tokenizer, and this server has none.");
    // temperature 0 is greedy (generate's default); OpenAI's default temperature is 1.
    const temperature = body.temperature ?? 1;
    const sampling: SamplingOptions = {};
    if (temperature > 0) {
      sampling.temperature = temperature;
      if (body.top_p != null && body.top_p < 1) sampling.topP = body.top_p;
      if (body.top_k != null && body.top_k > 0) sampling.topK = body.top_k;
      if (body.seed != null) sampling.seed = body.seed;
    }
    if (body.repetition_penalty != null && body.repetition_penalty !== 1) sampling.repetitionPenalty = body.repetition_penalty;
    const tok = this.tokenizer;
    const request: Omit<EngineRequest, "signal"> = {
      prompt,
      maxTokens,
      sampling,
      stopTokenIds: [...new Set(stopIds)],
      ...(body.presence_penalty ? { presencePenalty: body.presence_penalty } : {}),
      ...(body.frequency_penalty ? { frequencyPenalty: body.frequency_penalty } : {}),
      ...(logprobs !== null ? { topLogprobs: logprobs } : {}),
    };
    return {
      prompt,
      promptText,
      request,
      stopIds: new Set(stopIds),
      stopStrings,
      decode,
      tokenText: tok ? (id) => tok.decode([id]) : (id) => `token_id:${id}`,
      logprobs,
      stream: body.stream ?? false,
      includeUsage: (body.stream ?? false) && (body.stream_options?.include_usage ?? false),
      // Without a tokenizer the ids are the only output.
      returnTokenIds: (body.return_token_ids ?? false) || !tok,
    };
  }

  /** Runs the plan on the engine; a streamed or a whole response. */
  private respond(
    request: Request,
    plan: Plan,
    shape: {
      chunks: (steps: AsyncGenerator<Step, Outcome>, usage: () => Usage) => AsyncGenerator<unknown, void>;
      whole: (steps: Step[], o: Outcome, usage: Usage) => unknown;
    },
  ): Response | Promise<Response> {
    // One controller per request: the client going away (request.signal) or a cancelled stream aborts it.
    const abort = new AbortController();
    const onClientGone = () => abort.abort(new DOMException("the client disconnected", "AbortError"));
    if (request.signal.aborted) throw new ApiError(499, "The client closed the request.");
    request.signal.addEventListener("abort", onClientGone, { once: true });
    const unlink = () => request.signal.removeEventListener("abort", onClientGone);
    let generation: AsyncGenerator<EngineToken, EngineFinish>;
    try {
      generation = this.start({ ...plan.request, signal: abort.signal });
    } catch (e) {
      unlink();
      throw e;
    }
    let completionTokens = 0;
    const usage = (): Usage => ({
      prompt_tokens: plan.prompt.length,
      completion_tokens: completionTokens,
      total_tokens: plan.prompt.length + completionTokens,
    });
    const counted = async function* (): AsyncGenerator<Step, Outcome> {
      try {
        const steps = follow(generation, plan);
        let r = await steps.next();
        for (; !r.done; r = await steps.next()) {
          completionTokens++;
          yield r.value;
        }
        return r.value;
      } finally {
        unlink();
        // However we leave (done, stop string, cancelled, failed), the engine request ends and frees its slot.
        await generation.return("stop");
      }
    };
    if (plan.stream) {
      const steps = counted();
      // Closing the events (a cancelled stream) closes the steps too, which ends the engine request.
      const events = (async function* () {
        try {
          yield* shape.chunks(steps, usage);
        } finally {
          await steps.return(undefined as never);
        }
      })();
      return sseResponse(events, (e) => this.toApiError(e), onClientGone);
    }
    return (async () => {
      const steps: Step[] = [];
      const it = counted();
      let r;
      try {
        for (r = await it.next(); !r.done; r = await it.next()) steps.push(r.value);
      } catch (e) {
        if (abort.signal.aborted) throw new ApiError(499, "The client closed the request.");
        throw e;
      }
      return jsonResponse(200, shape.whole(steps, r.value, usage()));
    })();
  }

  /** engine.generate, whose synchronous errors are the request's fault (the queue is full, a bad prompt). */
  private start(req: EngineRequest): AsyncGenerator<EngineToken, EngineFinish> {
    try {
      return this.opts.engine.generate(req);
    } catch (e) {
      if (e instanceof QueueFullError || (e as Error)?.name === "QueueFullError" || e instanceof EngineClosedError) throw e;
      if (e instanceof Error) throw invalid("prompt", e.message.replace(/^wasm-lm: /, ""));
      throw e;
    }
  }
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** The engine's tokens as text steps: stop ids are not decoded; a stop string ends the generation. */
async function* follow(generation: AsyncGenerator<EngineToken, EngineFinish>, plan: Plan): AsyncGenerator<Step, Outcome> {
  const text = plan.decode ? new TextStream(plan.decode, plan.stopStrings) : null;
  const ids: number[] = [];
  let finish: EngineFinish;
  try {
    for (;;) {
      const r = await generation.next();
      if (r.done) {
        finish = r.value;
        break;
      }
      ids.push(r.value.id);
      const offset = text?.text.length ?? 0;
      const piece = text && !plan.stopIds.has(r.value.id) ? text.push(r.value.id) : "";
      yield { token: r.value, piece, offset };
      if (text?.stopped) {
        finish = "stop";
        break;
      }
    }
  } finally {
    // A stop string, a disconnect or an error ends the engine request too: its slot is freed now.
    await generation.return("stop");
  }
  const rest = text?.flush() ?? "";
  return { finish, ids, text: text?.text ?? "", rest };
}

/** OpenAI's logprob for a token; -Infinity (a masked token) as OpenAI's -9999, since JSON has no infinity. */
const lp = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? -9999 : x);

// Legacy completions' shape: parallel arrays; top alternatives as {token: logprob}.
function completionLogprobs(steps: Step[], plan: Plan) {
  const echo = plan.promptText?.length ?? 0;
  return {
    tokens: steps.map((s) => plan.tokenText(s.token.id)),
    token_logprobs: steps.map((s) => lp(s.token.logprob)),
    top_logprobs: steps.map((s) =>
      Object.fromEntries((s.token.top ?? []).slice(0, plan.logprobs!).map((t) => [plan.tokenText(t.id), lp(t.logprob)])),
    ),
    text_offset: steps.map((s) => echo + s.offset),
  };
}

// Chat's shape: one entry per token with its UTF-8 bytes. (The bytes are those of the token's
// decoded text: a token holding part of a character shows U+FFFD's bytes.)
function chatLogprobs(steps: Step[], plan: Plan) {
  const entry = (id: number, logprob: number | undefined) => {
    const token = plan.tokenText(id);
    return { token, logprob: lp(logprob), bytes: Array.from(new TextEncoder().encode(token)) };
  };
  return {
    content: steps.map((s) => ({
      ...entry(s.token.id, s.token.logprob),
      top_logprobs: (s.token.top ?? []).slice(0, plan.logprobs!).map((t) => entry(t.id, t.logprob)),
    })),
    refusal: null,
  };
}

function tokenIds(plan: Plan, o: Outcome) {
  return plan.returnTokenIds ? { prompt_token_ids: plan.prompt, token_ids: o.ids } : {};
}

function modelNotFound(id: string): ApiError {
  return new ApiError(
    404,
    `The model '${id.slice(0, 200)}' does not exist: this server serves only its own model.`,
    "invalid_request_error",
    "model",
    "model_not_found",
  );
}

function corsHeaders(origin: string | undefined): Record<string, string> | null {
  if (origin === undefined) return null;
  return {
    "access-control-allow-origin": origin,
    "access-control-expose-headers": "retry-after",
    ...(origin === "*" ? {} : { vary: "Origin" }),
  };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function randomId(): string {
  return crypto.randomUUID().replaceAll("-", "");
}

function checkOptions(o: HandlerOptions): void {
  const bad = (name: string, want: string) => {
    throw new Error(`createHandler: ${name} ${want}`);
  };
  if (!o || typeof o !== "object") bad("options", "must be an object");
  if (!o.engine || typeof o.engine.generate !== "function") bad("engine", "must have generate() (an Engine)");
  if (typeof o.modelId !== "string" || o.modelId === "") bad("modelId", "must be a non-empty string");
  if (o.tokenizer === undefined) bad("tokenizer", "must be a Tokenizer or null");
  if (!Array.isArray(o.eosTokenIds) || !o.eosTokenIds.every((id) => Number.isInteger(id) && id >= 0))
    bad("eosTokenIds", "must be an array of token ids");
  if (o.chatStopTokenIds !== undefined && !(Array.isArray(o.chatStopTokenIds) && o.chatStopTokenIds.every(Number.isInteger)))
    bad("chatStopTokenIds", "must be an array of token ids");
  if (o.apiKey !== undefined && (typeof o.apiKey !== "string" || o.apiKey === "")) bad("apiKey", "must be a non-empty string");
  if (o.maxBodyBytes !== undefined && !(Number.isInteger(o.maxBodyBytes) && o.maxBodyBytes > 0))
    bad("maxBodyBytes", `must be a positive integer, got ${o.maxBodyBytes}`);
  if (o.bodyTimeoutMs !== undefined && !(o.bodyTimeoutMs > 0 && Number.isFinite(o.bodyTimeoutMs)))
    bad("bodyTimeoutMs", `must be a positive number of ms, got ${o.bodyTimeoutMs}`);
  if (o.cors !== undefined && (typeof o.cors !== "string" || o.cors === "")) bad("cors", 'must be an origin (or "*")');
}
