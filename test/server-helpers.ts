// Shared by the server tests: the fixture model behind a real Engine on 127.0.0.1, a tokenizer
// directory with a chat template, raw-HTTP helpers, and a scripted fake engine for the cases a
// real model cannot produce on demand (a full queue, a failure mid-stream, a slow generation).
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:net";
import { FIXTURE_DIR, TOKENIZER_FIXTURE_DIR } from "./helpers.js";
import { loadModel } from "../src/node.js";
import { Engine, QueueFullError, type EngineOptions } from "../src/server/engine.js";
import { createHandler, type HandlerOptions, type ServingEngine } from "../src/server/handler.js";
import { serveNode } from "../src/server/node.js";
import type { EngineFinish, EngineRequest, EngineStats, EngineToken } from "../src/server/engine.js";

/**
 * A chat template that writes only tokens of the fixture's 512-id vocabulary (the first 512 OPT
 * ids: common words, no newline), so its prompts run on the tiny model.
 */
export const CHAT_TEMPLATE =
  "{% for m in messages %}{% if m.role == 'system' %}The {{ m.content }}.{% elif m.role == 'user' %} You said: {{ m.content }}." +
  "{% else %} I said: {{ m.content }}.{% endif %}{% endfor %}{% if add_generation_prompt %} I said:{% endif %}";

/** The OPT tokenizer files plus CHAT_TEMPLATE in tokenizer_config.json, in a temp directory. */
export function chatTokenizerDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "wasm-lm-chat-tok-"));
  for (const f of ["vocab.json", "merges.txt", "special_tokens_map.json"]) copyFileSync(join(TOKENIZER_FIXTURE_DIR, f), join(dir, f));
  const config = JSON.parse(readFileSync(join(TOKENIZER_FIXTURE_DIR, "tokenizer_config.json"), "utf8"));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ ...config, chat_template: CHAT_TEMPLATE }));
  return dir;
}

/** Prompts of the fixture's vocabulary (every id < 512). */
export const PROMPTS = [
  "The people said that the team will",
  "It was the first time in the season",
  "We think the government should",
  "It was told that the",
  "The company said on Friday that the market",
  "The number of people in the past two years",
];

export async function startServer(opts: { engine?: EngineOptions; handler?: Partial<HandlerOptions>; tokenizerDir?: string } = {}) {
  const loaded = await loadModel(FIXTURE_DIR, { tokenizer: opts.tokenizerDir ?? chatTokenizerDir() });
  const { model } = loaded;
  const tokenizer = loaded.tokenizer!;
  const engine = new Engine(model, { decodable: tokenizer.vocabSize, ...opts.engine });
  const handler = createHandler({
    engine,
    tokenizer,
    modelId: "opt-tiny",
    eosTokenIds: model.dims.eos,
    onError: () => {},
    ...opts.handler,
  });
  const server = await serveNode(handler, { host: "127.0.0.1", port: 0 });
  return { model, tokenizer, engine, handler, server, url: server.url };
}

export const post = (url: string, body: unknown, headers: Record<string, string> = {}, init: RequestInit = {}) =>
  fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...init,
  });

/** The `data:` payloads of a server-sent-events body ("[DONE]" included as is). */
export function sseData(text: string): string[] {
  return text
    .split("\n\n")
    .filter((e) => e.trim() !== "")
    .map((e) => {
      if (!e.startsWith("data: ")) throw new Error(`not an SSE data event: ${JSON.stringify(e.slice(0, 200))}`);
      return e.slice("data: ".length);
    });
}

/** Whether a raw HTTP response is complete: its head and a Content-Length's worth of body. */
function responseComplete(raw: string): boolean {
  const end = raw.indexOf("\r\n\r\n");
  const len = /content-length: (\d+)/i.exec(raw.slice(0, end));
  return end >= 0 && len !== null && raw.length >= end + 4 + Number(len[1]);
}

/**
 * A raw HTTP/1.1 exchange over a socket: the head, then the body in parts with pauses (for slow
 * and truncated bodies); resolves with the response as text once the server closes or answers.
 */
export function rawRequest(
  url: string,
  head: string,
  parts: { data: string | Uint8Array; delayMs?: number }[],
  timeoutMs = 10_000,
): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let got = "";
    let stopped = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`raw request: no response in ${timeoutMs} ms; got ${JSON.stringify(got.slice(0, 200))}`));
    }, timeoutMs);
    const finish = () => {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    };
    socket.on("data", (d) => {
      got += d.toString("latin1");
      if (responseComplete(got)) finish();
    });
    socket.on("close", finish);
    socket.on("error", () => finish());
    socket.on("connect", async () => {
      socket.write(head);
      for (const p of parts) {
        if (p.delayMs) await new Promise((r) => setTimeout(r, p.delayMs));
        if (stopped || socket.destroyed) return;
        socket.write(p.data);
      }
    });
  });
}

/** Status and parsed JSON body of a raw HTTP response. */
/**
 * POST a chunked body of up to `limit` bytes in `piece`-sized chunks, written as fast as the socket
 * takes them, stopping as soon as any response byte arrives — as curl does — and resolving with
 * the raw response and the bytes written. Unlike fetch (undici), an early answer is seen even when
 * the server then closes a connection the client is still writing to (EPIPE).
 */
export function rawChunkedPost(
  url: string,
  path: string,
  headers: Record<string, string>,
  limit: number,
  piece = 64 << 10,
  timeoutMs = 20_000,
): Promise<{ raw: string; sent: number }> {
  const { hostname, port } = new URL(url);
  const chunk = Buffer.concat([Buffer.from(`${piece.toString(16)}\r\n`), Buffer.alloc(piece, 0x78), Buffer.from("\r\n")]);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let got = "";
    let sent = 0;
    let done = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`raw chunked POST: no response in ${timeoutMs} ms after ${sent} bytes`));
    }, timeoutMs);
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ raw: got, sent });
    };
    const pump = () => {
      while (!done && got === "" && sent < limit) {
        sent += piece;
        if (!socket.write(chunk)) return void socket.once("drain", pump);
      }
      if (!done && got === "" && sent >= limit) socket.write("0\r\n\r\n");
    };
    socket.on("data", (d) => {
      got += d.toString("latin1");
      if (responseComplete(got)) finish();
    });
    socket.on("close", finish);
    socket.on("error", finish);
    socket.on("connect", () => {
      const head = Object.entries({ host: hostname, "transfer-encoding": "chunked", ...headers })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("");
      socket.write(`POST ${path} HTTP/1.1\r\n${head}\r\n`);
      pump();
    });
  });
}

export function parseRaw(raw: string): { status: number; headers: string; body: string } {
  const end = raw.indexOf("\r\n\r\n");
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(raw)?.[1] ?? 0), headers: raw.slice(0, end), body: raw.slice(end + 4) };
}

/**
 * An engine that plays a script: fixed tokens (with log-probabilities), an optional delay per
 * token, a failure after some tokens, or a synchronous QueueFullError. Records every request and
 * whether its generation was closed.
 */
export class ScriptedEngine implements ServingEngine {
  readonly requests: EngineRequest[] = [];
  open = 0;
  closed = 0;
  aborted = 0;
  constructor(
    public script: {
      tokens?: number[];
      finish?: EngineFinish;
      delayMs?: number;
      failAfter?: number;
      queueFull?: boolean;
      throwSync?: Error;
      ctx?: number;
    } = {},
  ) {}

  get stats(): EngineStats {
    return { active: this.open, queued: 0, maxBatch: 1, maxQueue: 0, ctx: this.script.ctx ?? 64, steps: 0, rows: 0 };
  }

  generate(req: EngineRequest): AsyncGenerator<EngineToken, EngineFinish> {
    if (this.script.queueFull) throw new QueueFullError(3);
    if (this.script.throwSync) throw this.script.throwSync;
    this.requests.push(req);
    this.open++;
    const s = this.script;
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- an async generator function has no lexical `this`
    const self = this;
    return (async function* () {
      try {
        const tokens = (s.tokens ?? [5, 82, 26]).slice(0, req.maxTokens);
        for (let i = 0; i < tokens.length; i++) {
          if (s.failAfter === i) throw new Error("kernel exploded at /secret/path/model.ts:42");
          if (s.delayMs) await new Promise((r) => setTimeout(r, s.delayMs));
          if (req.signal?.aborted) {
            self.aborted++;
            throw req.signal.reason;
          }
          const id = tokens[i];
          const tok: EngineToken = { id };
          if (req.topLogprobs !== undefined) {
            tok.logprob = -0.5;
            tok.top = [
              { id, logprob: -0.5 },
              { id: 6, logprob: -1.5 },
              { id: 7, logprob: -Infinity },
            ].slice(0, req.topLogprobs);
          }
          yield tok;
          if (req.stopTokenIds?.includes(id)) return "stop";
        }
        return s.finish ?? "length";
      } finally {
        self.open--;
        self.closed++;
      }
    })();
  }
}
