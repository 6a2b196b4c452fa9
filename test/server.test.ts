// The OpenAI-compatible server: the fixture model behind the real Engine on 127.0.0.1, driven
// through the official `openai` client and raw fetch; plus handler-level cases on a scripted
// engine (a full queue, failures, slow generations) and the `wasm-lm serve` command.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { FIXTURE_DIR, reference, TOKENIZER_FIXTURE_DIR } from "./helpers.js";
import {
  chatTokenizerDir,
  parseRaw,
  post,
  PROMPTS,
  rawChunkedPost,
  rawRequest,
  ScriptedEngine,
  sseData,
  startServer,
} from "./server-helpers.js";
import { generate } from "../src/generate/index.js";
import { streamChat } from "../src/generate/chat.js";
import { createHandler, type HandlerOptions } from "../src/server/handler.js";
import { loadTokenizer } from "../src/tokenizer/node.js";

const KEY = "sk-test-0123456789";
const ref = reference();

type Server = Awaited<ReturnType<typeof startServer>>;
let s: Server;
let client: OpenAI;

beforeAll(async () => {
  s = await startServer({ engine: { maxBatch: 4, maxQueue: 16 }, handler: { apiKey: KEY, cors: "https://app.example" } });
  client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: KEY, maxRetries: 0 });
});
afterAll(async () => {
  await s?.engine.drain();
  await s?.server.close();
});

const auth = { authorization: `Bearer ${KEY}` };
/** What the server must answer at temperature 0: generate's tokens, the text without the stop token. */
async function expected(prompt: string | number[], maxNewTokens: number) {
  const r = await generate(s.model, s.tokenizer, prompt, { maxNewTokens });
  const stopped = r.finish_reason === "eos";
  const ids = stopped ? r.new_tokens.slice(0, -1) : r.new_tokens;
  return { r, text: s.tokenizer.decode(ids), finish: stopped ? "stop" : "length", ids: r.new_tokens };
}

describe("completions", () => {
  it("temperature 0 gives exactly generate's text, ids and usage", async () => {
    for (const prompt of PROMPTS.slice(0, 4)) {
      const want = await expected(prompt, 20);
      const got = await client.completions.create({
        model: "opt-tiny",
        prompt,
        max_tokens: 20,
        temperature: 0,
        return_token_ids: true,
      } as OpenAI.CompletionCreateParamsNonStreaming);
      expect(got.object).toBe("text_completion");
      expect(got.model).toBe("opt-tiny");
      expect(got.choices[0].text, prompt).toBe(want.text);
      expect(got.choices[0].finish_reason).toBe(want.finish);
      expect((got.choices[0] as unknown as { token_ids: number[] }).token_ids).toEqual(want.ids);
      expect(got.usage).toEqual({
        prompt_tokens: want.r.input_ids.length,
        completion_tokens: want.ids.length,
        total_tokens: want.r.input_ids.length + want.ids.length,
      });
    }
  });

  it("a token-id prompt gives the reference's greedy tokens (to the first EOS)", async () => {
    const got = await post(
      `${s.url}/v1/completions`,
      { prompt: ref.input_ids, max_tokens: 32, temperature: 0, return_token_ids: true },
      auth,
    );
    expect(got.status).toBe(200);
    const j = await got.json();
    const want: number[] = ref.generation.new_tokens;
    const eos = want.indexOf(2);
    expect(j.choices[0].token_ids).toEqual(eos < 0 ? want : want.slice(0, eos + 1));
    expect(j.choices[0].prompt_token_ids).toEqual(ref.input_ids);
  });

  it("streamed with return_token_ids: one chunk per token carrying its id; the last chunk has them all", async () => {
    const got = await post(
      `${s.url}/v1/completions`,
      { prompt: ref.input_ids, max_tokens: 8, temperature: 0, stream: true, return_token_ids: true },
      auth,
    );
    expect(got.status).toBe(200);
    const chunks = sseData(await got.text())
      .filter((d) => d !== "[DONE]")
      .map((d) => JSON.parse(d));
    const per = chunks.filter((c) => c.choices[0].finish_reason === null).map((c) => c.choices[0].token_ids);
    for (const ids of per) expect(ids).toHaveLength(1);
    const last = chunks[chunks.length - 1].choices[0];
    expect(per.flat()).toEqual(last.token_ids);
    expect(last.token_ids.length).toBeGreaterThan(0);
  });

  it("max_tokens defaults to 16, as OpenAI's", async () => {
    const got = await client.completions.create({ model: "opt-tiny", prompt: PROMPTS[1], temperature: 0 });
    const want = await expected(PROMPTS[1], 16);
    expect(got.choices[0].text).toBe(want.text);
    expect(got.usage!.completion_tokens).toBe(want.ids.length);
  });

  it("streamed chunks concatenate to the plain text; include_usage adds a usage chunk", async () => {
    for (const prompt of PROMPTS.slice(2, 5)) {
      const plain = await client.completions.create({ model: "opt-tiny", prompt, max_tokens: 24, temperature: 0 });
      const stream = await client.completions.create({
        model: "opt-tiny",
        prompt,
        max_tokens: 24,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = "";
      const chunks: OpenAI.Completion[] = [];
      for await (const c of stream) {
        chunks.push(c);
        text += c.choices[0]?.text ?? "";
      }
      expect(text).toBe(plain.choices[0].text);
      const last = chunks.at(-1)!;
      expect(last.choices).toEqual([]);
      expect(last.usage).toEqual(plain.usage);
      expect(chunks.at(-2)!.choices[0].finish_reason).toBe(plain.choices[0].finish_reason);
      expect(chunks.every((c) => c.object === "text_completion" && c.id === chunks[0].id)).toBe(true);
    }
  });

  it("the raw stream is OpenAI's SSE: data lines, then data: [DONE]", async () => {
    const r = await post(`${s.url}/v1/completions`, { prompt: PROMPTS[0], max_tokens: 5, temperature: 0, stream: true }, auth);
    expect(r.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = sseData(await r.text());
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    expect(chunks.at(-1).choices[0].finish_reason).toMatch(/^(stop|length)$/);
    expect(chunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null)).toBe(true);
  });

  it("stop strings cut the text before the stop, as generate's stopStrings, streamed or not", async () => {
    const full = (await expected(PROMPTS[0], 20)).text;
    const stop = full.slice(8, 12);
    const want = await generate(s.model, s.tokenizer, PROMPTS[0], { maxNewTokens: 20, stopStrings: [stop] });
    expect(want.finish_reason).toBe("stop_string");
    const got = await client.completions.create({
      model: "opt-tiny",
      prompt: PROMPTS[0],
      max_tokens: 20,
      temperature: 0,
      stop: [stop, "never appears"],
    });
    expect(got.choices[0].text).toBe(want.text);
    expect(got.choices[0].finish_reason).toBe("stop");
    let streamed = "";
    for await (const c of await client.completions.create({
      model: "opt-tiny",
      prompt: PROMPTS[0],
      max_tokens: 20,
      temperature: 0,
      stop,
      stream: true,
    }))
      streamed += c.choices[0]?.text ?? "";
    expect(streamed).toBe(want.text);
    // The stop string ended the engine request: it leaves the batch before the next step.
    for (let i = 0; i < 100 && s.engine.stats.active > 0; i++) await new Promise((w) => setTimeout(w, 5));
    expect(s.engine.stats.active).toBe(0);
  });

  it("echo puts the prompt before the completion", async () => {
    const got = await client.completions.create({ model: "opt-tiny", prompt: PROMPTS[3], max_tokens: 6, temperature: 0, echo: true });
    expect(got.choices[0].text).toBe(PROMPTS[3] + (await expected(PROMPTS[3], 6)).text);
  });

  it("logprobs: completions' shape (tokens, token_logprobs, top_logprobs, text_offset)", async () => {
    const got = await client.completions.create({ model: "opt-tiny", prompt: PROMPTS[0], max_tokens: 8, temperature: 0, logprobs: 3 });
    const lp = got.choices[0].logprobs!;
    const n = got.usage!.completion_tokens;
    expect(lp.tokens).toHaveLength(n);
    expect(lp.token_logprobs).toHaveLength(n);
    expect(lp.top_logprobs).toHaveLength(n);
    expect(lp.text_offset).toHaveLength(n);
    expect(lp.tokens!.join("")).toBe(got.choices[0].text);
    lp.top_logprobs!.forEach((top, i) => {
      const values = Object.values(top);
      expect(values.length).toBeGreaterThan(0);
      expect(values.length).toBeLessThanOrEqual(3);
      // Greedy: the chosen token is the most likely one.
      expect(lp.token_logprobs![i]).toBeCloseTo(Math.max(...values), 6);
      expect(lp.token_logprobs![i]).toBeLessThanOrEqual(0);
    });
    expect(lp.text_offset![0]).toBe(0);
    expect(lp.text_offset!.every((o, i) => i === 0 || o >= lp.text_offset![i - 1])).toBe(true);
  });

  it("sampling: a seed repeats, top_k 1 is greedy; penalties reach the engine", async () => {
    const ask = (extra: object) =>
      client.completions.create({
        model: "opt-tiny",
        prompt: PROMPTS[1],
        max_tokens: 16,
        ...extra,
      } as OpenAI.CompletionCreateParamsNonStreaming);
    const a = await ask({ temperature: 1.5, seed: 7 });
    const b = await ask({ temperature: 1.5, seed: 7 });
    expect(a.choices[0].text).toBe(b.choices[0].text);
    const seeds = await Promise.all([1, 2, 3, 4].map((seed) => ask({ temperature: 2, seed })));
    expect(new Set(seeds.map((r) => r.choices[0].text)).size).toBeGreaterThan(1);
    const k1 = await ask({ temperature: 2, top_k: 1, seed: 3 });
    expect(k1.choices[0].text).toBe((await expected(PROMPTS[1], 16)).text);
    // A strong frequency penalty changes greedy output that repeats tokens.
    const greedy = await ask({ temperature: 0 });
    const penalised = await ask({ temperature: 0, frequency_penalty: 2, presence_penalty: 2 });
    expect(penalised.choices[0].text).not.toBe(greedy.choices[0].text);
  });

  it("concurrent requests get their own answers (no cross-talk)", async () => {
    const wants: Awaited<ReturnType<typeof expected>>[] = [];
    for (const p of PROMPTS) wants.push(await expected(p, 12));
    const jobs = PROMPTS.flatMap((p, i) => [0, 1].map((k) => ({ p, i, stream: k === 1 })));
    const got = await Promise.all(
      jobs.map(async (j) => {
        if (!j.stream)
          return (await client.completions.create({ model: "opt-tiny", prompt: j.p, max_tokens: 12, temperature: 0 })).choices[0].text;
        let t = "";
        for await (const c of await client.completions.create({
          model: "opt-tiny",
          prompt: j.p,
          max_tokens: 12,
          temperature: 0,
          stream: true,
        }))
          t += c.choices[0]?.text ?? "";
        return t;
      }),
    );
    jobs.forEach((j, n) => expect(got[n], `${j.p} (stream ${j.stream})`).toBe(wants[j.i].text));
    expect(s.engine.stats.rows).toBeGreaterThan(s.engine.stats.steps); // they were batched
  });
});

describe("chat completions", () => {
  const messages = [
    { role: "system" as const, content: "team" },
    { role: "user" as const, content: "the people will go home" },
  ];

  it("goes through the chat template; temperature 0 equals streamChat's reply", async () => {
    const prompt = s.tokenizer.encodeChat(messages);
    expect(prompt.every((id) => id < 512)).toBe(true);
    const want = await (async () => {
      const it = streamChat(s.model, s.tokenizer, messages, { maxNewTokens: 20 });
      for (;;) {
        const r = await it.next();
        if (r.done) return r.value;
      }
    })();
    const got = await client.chat.completions.create({ model: "opt-tiny", messages, max_tokens: 20, temperature: 0 });
    expect(got.object).toBe("chat.completion");
    expect(got.choices[0].message.role).toBe("assistant");
    expect(got.choices[0].message.content).toBe(want.text);
    expect(got.choices[0].finish_reason).toBe(want.finish_reason === "eos" ? "stop" : "length");
    expect(got.usage!.prompt_tokens).toBe(prompt.length);
    expect(got.usage!.completion_tokens).toBe(want.new_tokens.length);

    let text = "";
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of await client.chat.completions.create({
      model: "opt-tiny",
      messages,
      max_tokens: 20,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    })) {
      chunks.push(c);
      text += c.choices[0]?.delta.content ?? "";
    }
    expect(text).toBe(want.text);
    expect(chunks[0].choices[0].delta.role).toBe("assistant");
    expect(chunks.every((c) => c.object === "chat.completion.chunk")).toBe(true);
    expect(chunks.at(-2)!.choices[0].finish_reason).toBe(got.choices[0].finish_reason);
    expect(chunks.at(-1)!.usage).toEqual(got.usage);
  });

  it("max_tokens defaults to the rest of the context", async () => {
    const got = await client.chat.completions.create({ model: "opt-tiny", messages, temperature: 0 });
    const prompt = s.tokenizer.encodeChat(messages).length;
    if (got.choices[0].finish_reason === "length") expect(got.usage!.completion_tokens).toBe(s.engine.stats.ctx - prompt);
    else expect(got.usage!.completion_tokens).toBeLessThanOrEqual(s.engine.stats.ctx - prompt);
  });

  it("text parts are joined; logprobs in chat's shape", async () => {
    const parts = [
      {
        role: "user" as const,
        content: [
          { type: "text" as const, text: "the people" },
          { type: "text" as const, text: " will go home" },
        ],
      },
    ];
    const got = await client.chat.completions.create({
      model: "opt-tiny",
      messages: parts,
      max_tokens: 6,
      temperature: 0,
      logprobs: true,
      top_logprobs: 2,
    });
    const plain = await client.chat.completions.create({
      model: "opt-tiny",
      messages: [{ role: "user", content: "the people will go home" }],
      max_tokens: 6,
      temperature: 0,
    });
    expect(got.choices[0].message.content).toBe(plain.choices[0].message.content);
    const content = got.choices[0].logprobs!.content!;
    expect(content).toHaveLength(got.usage!.completion_tokens);
    for (const e of content) {
      expect(typeof e.token).toBe("string");
      expect(e.bytes).toEqual(Array.from(new TextEncoder().encode(e.token)));
      expect(e.top_logprobs).toHaveLength(2);
      expect(e.logprob).toBeCloseTo(e.top_logprobs[0].logprob, 6);
    }
  });

  it("bad messages are 400s naming the field", async () => {
    const bad = async (body: object, param: RegExp) => {
      const r = await post(`${s.url}/v1/chat/completions`, body, auth);
      expect(r.status).toBe(400);
      const j = await r.json();
      expect(j.error.param).toMatch(param);
      expect(j.error.message).toMatch(param);
    };
    await bad({ messages: "hi" }, /messages/);
    await bad({ messages: [] }, /messages/);
    await bad({ messages: [{ role: "user", content: 5 }] }, /messages\[0\]\.content/);
    await bad({ messages: [{ content: "x" }] }, /messages\[0\]\.role/);
    await bad({ messages: [{ role: "user", content: [{ type: "image_url", image_url: {} }] }] }, /messages\[0\]\.content/);
    await bad({ messages: [{ role: "user", content: "x" }], logprobs: "yes" }, /logprobs/);
    await bad({ messages: [{ role: "user", content: "x" }], top_logprobs: 2 }, /top_logprobs/);
    await bad({ messages: [{ role: "user", content: "x" }], tools: [{ type: "function" }] }, /tools/);
  });

  it("a tokenizer without a chat template: 400 saying so", async () => {
    const h = createHandler({
      engine: new ScriptedEngine(),
      tokenizer: loadTokenizer(TOKENIZER_FIXTURE_DIR),
      modelId: "m",
      eosTokenIds: [2],
    });
    const r = await h(
      new Request("http://x/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ messages: [{ role: "user", content: "hi" }] }),
      }),
    );
    expect(r.status).toBe(400);
    expect((await r.json()).error.message).toMatch(/no chat template/);
  });
});

describe("routes, auth and errors", () => {
  it("/health needs no key; /v1/models lists the one model", async () => {
    const h = await fetch(`${s.url}/health`);
    expect(h.status).toBe(200);
    expect(await h.json()).toMatchObject({ status: "ok", model: "opt-tiny", ctx: 64 });
    expect((await fetch(`${s.url}/health`, { method: "HEAD" })).status).toBe(200);
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["opt-tiny"]);
    expect((await client.models.retrieve("opt-tiny")).object).toBe("model");
    await expect(client.models.retrieve("gpt-4")).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("401 without the key or with a wrong one (Bearer)", async () => {
    const noKey = await post(`${s.url}/v1/completions`, { prompt: "x" });
    expect(noKey.status).toBe(401);
    expect(noKey.headers.get("www-authenticate")).toBe("Bearer");
    expect((await noKey.json()).error).toMatchObject({ type: "invalid_request_error", code: "invalid_api_key" });
    for (const h of [`Bearer ${KEY}x`, `Bearer ${KEY.slice(0, -1)}`, KEY, `Basic ${KEY}`, "Bearer "]) {
      expect((await post(`${s.url}/v1/completions`, { prompt: "x" }, { authorization: h })).status, h).toBe(401);
    }
    expect((await fetch(`${s.url}/v1/models`)).status).toBe(401);
    const wrong = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "nope", maxRetries: 0 });
    await expect(wrong.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it("404 for unknown routes and models (model left out: the served one)", async () => {
    const r = await fetch(`${s.url}/v1/embeddings`, { method: "POST", headers: auth });
    expect(r.status).toBe(404);
    expect((await r.json()).error.message).toMatch(/\/v1\/embeddings/);
    await expect(client.completions.create({ model: "gpt-4", prompt: "x" })).rejects.toMatchObject({
      status: 404,
      code: "model_not_found",
      param: "model",
    });
    const noModel = await post(`${s.url}/v1/completions`, { prompt: PROMPTS[0], max_tokens: 2 }, auth);
    expect(noModel.status).toBe(200);
  });

  it("405 with Allow for a wrong method", async () => {
    const r = await fetch(`${s.url}/v1/completions`, { headers: auth });
    expect(r.status).toBe(405);
    expect(r.headers.get("allow")).toMatch(/POST/);
    const m = await fetch(`${s.url}/v1/models`, { method: "DELETE", headers: auth });
    expect(m.status).toBe(405);
    expect(m.headers.get("allow")).toMatch(/GET/);
  });

  it("400 naming the field for wrong types and values of known fields; unknown fields are ignored", async () => {
    const cases: [object, string][] = [
      [{ prompt: 5 }, "prompt"],
      [{}, "prompt"],
      [{ prompt: "x", temperature: "hot" }, "temperature"],
      [{ prompt: "x", temperature: 3 }, "temperature"],
      [{ prompt: "x", max_tokens: 1.5 }, "max_tokens"],
      [{ prompt: "x", max_tokens: 0 }, "max_tokens"],
      [{ prompt: "x", top_p: 0 }, "top_p"],
      [{ prompt: "x", n: 2 }, "n"],
      [{ prompt: "x", stream: "yes" }, "stream"],
      [{ prompt: "x", stop: ["a", "b", "c", "d", "e"] }, "stop"],
      [{ prompt: "x", stop: "" }, "stop"],
      [{ prompt: "x", logprobs: 6 }, "logprobs"],
      [{ prompt: "x", seed: "1" }, "seed"],
      [{ prompt: "x", presence_penalty: 3 }, "presence_penalty"],
      [{ prompt: "x", model: 5 }, "model"],
      [{ prompt: "x", stream_options: { include_usage: 1 } }, "stream_options.include_usage"],
      [{ prompt: [1, -2] }, "prompt"],
      [{ prompt: [1, 2.5] }, "prompt"],
      [{ prompt: ["a", "b"] }, "prompt"],
      [{ prompt: [1, 60000] }, "prompt"],
      [{ prompt: "x", max_tokens: 64 }, "max_tokens"],
      [{ prompt: Array(64).fill(5) }, "prompt"],
      [{ prompt: "x", logprobs: 1, echo: true }, "echo"],
    ];
    for (const [body, param] of cases) {
      const r = await post(`${s.url}/v1/completions`, body, auth);
      const j = await r.json();
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(j.error.param, JSON.stringify(body)).toMatch(new RegExp(`^${param.replace(/[.[\]]/g, "\\$&")}(\\[\\d+\\])?$`));
      expect(j.error.type).toBe("invalid_request_error");
      expect(j.error.message).toContain(param.split(".")[0]);
    }
    const ok = await post(
      `${s.url}/v1/completions`,
      { prompt: PROMPTS[0], max_tokens: 2, temperature: 0, frobnicate: { deep: [1] }, user: "u", n: 1, top_p: null, stop: null },
      auth,
    );
    expect(ok.status).toBe(200);
  });

  it("413 for a body over the limit (declared or streamed), 415 for non-JSON, 400 for malformed JSON", async () => {
    const big = JSON.stringify({ prompt: "x".repeat(1 << 20) });
    const declared = await post(`${s.url}/v1/completions`, big, auth);
    expect(declared.status).toBe(413);
    expect((await declared.json()).error.code).toBe("request_too_large");
    expect(declared.headers.get("connection")).toBe("close");
    // Chunked, no Content-Length: counted while reading, and refused long before the end of 1 GiB.
    // A raw socket rather than fetch: undici reports EPIPE instead of the early 413 when the
    // server closes the connection while the body is still being written (seen in CI).
    const { raw, sent } = await rawChunkedPost(s.url, "/v1/completions", { ...auth, "content-type": "application/json" }, 1 << 30);
    const streamed = parseRaw(raw);
    expect(streamed.status, raw.slice(0, 200)).toBe(413);
    expect(JSON.parse(streamed.body).error.code).toBe("request_too_large");
    expect(sent).toBeLessThan(1 << 28);

    const form = await post(`${s.url}/v1/completions`, "prompt=x", { ...auth, "content-type": "application/x-www-form-urlencoded" });
    expect(form.status).toBe(415);
    for (const bad of ["{", "", "[1,2]", "null", '"x"', '{"prompt": "x",}']) {
      const r = await post(`${s.url}/v1/completions`, bad, auth);
      expect(r.status, bad).toBe(400);
      expect((await r.json()).error.message).toMatch(/JSON|empty/);
    }
  });

  it("408 when the body does not arrive in time", async () => {
    const h = createHandler({ engine: new ScriptedEngine(), tokenizer: s.tokenizer, modelId: "m", eosTokenIds: [2], bodyTimeoutMs: 150 });
    const { serveNode } = await import("../src/server/node.js");
    const srv = await serveNode(h, { port: 0 });
    try {
      const raw = await rawRequest(
        srv.url,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        [{ data: '{"prompt": ' }, { data: '"x"}', delayMs: 2000 }],
      );
      const r = parseRaw(raw);
      expect(r.status).toBe(408);
      expect(JSON.parse(r.body).error.code).toBe("request_timeout");
    } finally {
      await srv.close();
    }
  });

  it("CORS: preflight and the allow-origin header", async () => {
    const pre = await fetch(`${s.url}/v1/chat/completions`, {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, x-stainless-os",
      },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(pre.headers.get("access-control-allow-headers")).toMatch(/x-stainless-os/);
    const r = await fetch(`${s.url}/v1/models`, { headers: auth });
    expect(r.headers.get("access-control-allow-origin")).toBe("https://app.example");
    const err = await fetch(`${s.url}/nope`);
    expect(err.headers.get("access-control-allow-origin")).toBe("https://app.example");
  });

  it("a client that disconnects mid-stream cancels its generation", async () => {
    // The tiny model is too fast to catch mid-way: a scripted engine with 20 ms per token.
    const engine = new ScriptedEngine({ tokens: Array(50).fill(5), delayMs: 20 });
    const h = createHandler({ engine, tokenizer: s.tokenizer, modelId: "m", eosTokenIds: [2] });
    const { serveNode } = await import("../src/server/node.js");
    const srv = await serveNode(h, { port: 0 });
    try {
      for (const stream of [true, false]) {
        const ac = new AbortController();
        const r = post(`${srv.url}/v1/completions`, { prompt: "the", max_tokens: 50, stream }, {}, { signal: ac.signal });
        if (stream) {
          const res = await r;
          const reader = res.body!.getReader();
          await reader.read();
        } else {
          await new Promise((w) => setTimeout(w, 100));
        }
        ac.abort();
        await r.then((res) => res.text()).catch(() => {});
        for (let i = 0; i < 100 && engine.open > 0; i++) await new Promise((w) => setTimeout(w, 10));
        expect(engine.open, `stream ${stream}`).toBe(0);
        expect(engine.aborted).toBeGreaterThan(0);
        engine.aborted = 0;
      }
      expect(engine.requests.every((q) => q.signal?.aborted)).toBe(true);
    } finally {
      await srv.close();
    }
  });
});

describe("the handler on a scripted engine", () => {
  const tokenizer = loadTokenizer(TOKENIZER_FIXTURE_DIR);
  const make = (engine: ScriptedEngine, extra: Partial<HandlerOptions> = {}) => {
    const errors: unknown[] = [];
    const h = createHandler({ engine, tokenizer, modelId: "m", eosTokenIds: [2], onError: (e) => errors.push(e), ...extra });
    return { h, errors };
  };
  const req = (path: string, body: object) =>
    new Request(`http://x${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

  it("429 with Retry-After when the queue is full", async () => {
    const { h } = make(new ScriptedEngine({ queueFull: true }));
    const r = await h(req("/v1/completions", { prompt: "the" }));
    expect(r.status).toBe(429);
    expect(r.headers.get("retry-after")).toBe("3");
    expect((await r.json()).error.code).toBe("queue_full");
  });

  it("500 without a stack or internals; a failure mid-stream is one SSE error event", async () => {
    const { h, errors } = make(new ScriptedEngine({ failAfter: 1 }));
    const r = await h(req("/v1/completions", { prompt: "the" }));
    expect(r.status).toBe(500);
    const text = await r.text();
    expect(JSON.parse(text).error.type).toBe("server_error");
    expect(text).not.toMatch(/secret|\.ts|at /);
    expect(errors).toHaveLength(1);
    const st = await h(req("/v1/chat/completions", { messages: [{ role: "user", content: "x" }], stream: true }));
    expect(st.status).toBe(400); // this tokenizer has no template: the error comes before the stream
    const s2 = await h(req("/v1/completions", { prompt: "the", stream: true }));
    expect(s2.status).toBe(200);
    const events = sseData(await s2.text());
    expect(JSON.parse(events.at(-1)!).error.type).toBe("server_error");
    expect(events.join("")).not.toMatch(/secret/);
  });

  it("maps OpenAI's parameters onto the engine request", async () => {
    const engine = new ScriptedEngine();
    const { h } = make(engine);
    await (
      await h(
        req("/v1/completions", {
          prompt: [5, 6],
          max_tokens: 7,
          temperature: 0.5,
          top_p: 0.9,
          top_k: 4,
          seed: 3,
          presence_penalty: 0.5,
          frequency_penalty: -1,
          logprobs: 0,
        }),
      )
    ).text();
    await (await h(req("/v1/completions", { prompt: [5], temperature: 0, top_p: 0.5, seed: 1 }))).text();
    const [a, b] = engine.requests;
    expect(a).toMatchObject({
      prompt: [5, 6],
      maxTokens: 7,
      sampling: { temperature: 0.5, topP: 0.9, topK: 4, seed: 3 },
      presencePenalty: 0.5,
      frequencyPenalty: -1,
      topLogprobs: 0,
      stopTokenIds: [2],
    });
    expect(b.sampling).toEqual({}); // temperature 0: greedy
    expect(b.maxTokens).toBe(16);
    expect(b.topLogprobs).toBeUndefined();
  });

  it("-Infinity log-probabilities become -9999 (JSON has no infinity)", async () => {
    const { h } = make(new ScriptedEngine());
    const j = await (await h(req("/v1/completions", { prompt: "the", logprobs: 3 }))).json();
    expect(Object.values(j.choices[0].logprobs.top_logprobs[0])).toContain(-9999);
  });

  it("without a tokenizer: token ids in, token ids out", async () => {
    const engine = new ScriptedEngine({ tokens: [7, 8, 2] });
    const h = createHandler({ engine, tokenizer: null, modelId: "m", eosTokenIds: [2] });
    const j = await (await h(req("/v1/completions", { prompt: [1, 2, 3] }))).json();
    expect(j.choices[0]).toMatchObject({ text: "", token_ids: [7, 8, 2], finish_reason: "stop" });
    expect((await h(req("/v1/completions", { prompt: "text" }))).status).toBe(400);
    expect((await h(req("/v1/completions", { prompt: [1], stop: "x" }))).status).toBe(400);
    expect((await h(req("/v1/chat/completions", { messages: [{ role: "user", content: "x" }] }))).status).toBe(400);
  });

  it("bad options are clear errors", () => {
    const engine = new ScriptedEngine();
    expect(() => createHandler({ engine, tokenizer, modelId: "", eosTokenIds: [2] })).toThrow(/modelId/);
    expect(() => createHandler({ engine, tokenizer, modelId: "m", eosTokenIds: [2], maxBodyBytes: -1 })).toThrow(/maxBodyBytes/);
    expect(() => createHandler({ engine, tokenizer, modelId: "m", eosTokenIds: [2], apiKey: "" })).toThrow(/apiKey/);
    expect(() => createHandler({ engine: {} as never, tokenizer, modelId: "m", eosTokenIds: [2] })).toThrow(/engine/);
  });
});

describe("wasm-lm serve", () => {
  it("prints its URL, serves, and exits 0 on SIGTERM after finishing in-flight requests", async () => {
    const cli = fileURLToPath(new URL("../src/cli.ts", import.meta.url));
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        cli,
        "serve",
        "--model",
        FIXTURE_DIR,
        "--tokenizer",
        chatTokenizerDir(),
        "--port",
        "0",
        "--model-id",
        "tiny",
        "--max-batch",
        "2",
      ],
      {
        env: { ...process.env, WASM_LM_API_KEY: "k1" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    try {
      for (let i = 0; i < 300 && !/serving/.test(err); i++) await new Promise((r) => setTimeout(r, 50));
      const m = /^wasm-lm: serving tiny at (http:\/\/127\.0\.0\.1:\d+)\/v1\n$/m.exec(err);
      expect(m, err).not.toBeNull();
      const base = m![1];
      const c = new OpenAI({ baseURL: `${base}/v1`, apiKey: "k1", maxRetries: 0 });
      expect((await c.models.list()).data[0].id).toBe("tiny");
      // A streamed request in flight when the signal comes still completes.
      const stream = await c.chat.completions.create({
        model: "tiny",
        messages: [{ role: "user", content: "the people" }],
        max_tokens: 30,
        temperature: 0,
        stream: true,
      });
      child.kill("SIGTERM");
      let chunks = 0;
      for await (const _ of stream) chunks++;
      expect(chunks).toBeGreaterThan(1);
      expect(await exited).toBe(0);
      expect(err).toMatch(/shutting down/);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
