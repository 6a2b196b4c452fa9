// The command line as a user runs it: the built dist/cli.js (npm test builds first).
import { afterAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FIXTURE_DIR, maxAbsDiff, reference } from "./helpers.js";
import { loadTokenizer } from "../src/tokenizer/node.js";

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const ref = reference();

function run(args: string[], input?: string) {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'npm run build' first`);
  const r = spawnSync(process.execPath, [CLI, ...args], { input, encoding: "utf8", maxBuffer: 256 << 20 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** A failure is one line on stderr, no stack trace. */
function expectOneLineError(r: ReturnType<typeof run>, code: number, pattern: RegExp) {
  expect(r.code).toBe(code);
  const lines = r.err.trim().split("\n");
  expect(lines.length, r.err).toBe(1);
  expect(r.err).toMatch(pattern);
  expect(r.err).not.toMatch(/\n\s+at /);
}

describe("wasm-lm CLI", () => {
  it("generate --json on the fixture gives transformers' greedy tokens", () => {
    const r = run(["generate", "--model", FIXTURE_DIR, "--ids", ref.input_ids.join(","), "-n", "32", "--ignore-eos", "--json"]);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.input_ids).toEqual(ref.input_ids);
    expect(j.new_tokens).toEqual(ref.generation.new_tokens);
    expect(typeof j.text).toBe("string");
    for (const k of ["load_ms", "prefill_ms", "decode_ms_per_token"]) expect(typeof j.timings[k]).toBe("number");
  });

  it("logits --json matches the reference, --last gives one row", () => {
    const r = run(["logits", "--model", FIXTURE_DIR, "--ids", ref.input_ids.join(","), "--json"]);
    expect(r.code, r.err).toBe(0);
    const rows: number[][] = JSON.parse(r.out).logits;
    expect(rows.length).toBe(ref.input_ids.length);
    const d = maxAbsDiff(rows.flat(), ref.logits.flat());
    console.log(`CLI logits max|Δ| ${d.max.toExponential(2)}`);
    expect(d.max).toBeLessThanOrEqual(1e-4);
    const last = JSON.parse(run(["logits", "--model", FIXTURE_DIR, "--ids", ref.input_ids.join(","), "--last", "--json"]).out).logits;
    expect(last.length).toBe(1);
    expect(maxAbsDiff(last[0], ref.logits[ref.logits.length - 1]).max).toBeLessThanOrEqual(1e-4);
  });

  it("tokenize from --text and from stdin (a NUL travels only there)", () => {
    expect(JSON.parse(run(["tokenize", "--text", "Hello world!", "--json"]).out).ids).toEqual([2, 31414, 232, 328]);
    const r = run(["tokenize", "--text-file", "-", "--json"], "a\u0000b");
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).ids[0]).toBe(2);
  });

  it("inspect prints every layer with the logit lens and attention", () => {
    const r = run(["inspect", "--model", FIXTURE_DIR, "--ids", ref.input_ids.join(","), "--json"]);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.layers.length).toBe(3); // embeddings + 2 layers
    expect(j.layers[2].top[0].id).toBe(ref.argmax[ref.argmax.length - 1]);
    expect(j.layers[1].heads.length).toBe(4);
    const text = run(["inspect", "--model", FIXTURE_DIR, "--ids", ref.input_ids.join(",")]);
    expect(text.out).toMatch(/layer 1 .*\n.*logit lens/);
  });

  it("errors are one clear line with a non-zero exit", () => {
    expectOneLineError(run(["generate", "--model", "/nonexistent/dir", "--prompt", "x"]), 1, /not a directory, a hub id/);
    expectOneLineError(run(["generate", "--model", FIXTURE_DIR, "--ids", "2,x"]), 2, /comma-separated/);
    expectOneLineError(run(["generate", "--model", FIXTURE_DIR]), 2, /exactly one of --prompt, --prompt-file, --ids or --messages/);
    expectOneLineError(run(["generate", "--model", FIXTURE_DIR, "--ids", "2,600"]), 1, /token id 600 .* outside the vocabulary/);
    expectOneLineError(run(["generate", "--model", FIXTURE_DIR, "--ids", "2", "--temperature", "-1"]), 1, /temperature/);
    const dir = mkdtempSync(join(tmpdir(), "wasm-lm-cli-"));
    try {
      writeFileSync(join(dir, "config.json"), "{ not json");
      expectOneLineError(run(["generate", "--model", dir, "--ids", "2"]), 1, /config\.json: not valid JSON/);
      writeFileSync(join(dir, "config.json"), JSON.stringify({ ...ref.config, num_attention_heads: 5 }));
      expectOneLineError(run(["generate", "--model", dir, "--ids", "2"]), 1, /hidden_size 64 is not divisible by num_attention_heads 5/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("quantize writes an int8 directory that loads as int8", () => {
    const dir = mkdtempSync(join(tmpdir(), "wasm-lm-q-"));
    try {
      const q = run(["quantize", "--model", FIXTURE_DIR, "--out", dir, "--threads", "1"]);
      expect(q.code, q.err).toBe(0);
      const g = JSON.parse(run(["generate", "--model", dir, "--ids", ref.input_ids.join(","), "-n", "4", "--ignore-eos", "--json"]).out);
      expect(g.dtype).toBe("int8");
      expect(g.new_tokens.slice(0, 4)).toEqual(ref.generation.new_tokens.slice(0, 4));
      expectOneLineError(run(["generate", "--model", dir, "--ids", "2", "--dtype", "f16"]), 1, /int8-quantized; load it with dtype int8/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("--stream-layers gives the same tokens; quantize --embed-dtype int8 writes an int8 embedding", () => {
    const r = run([
      "generate",
      "--model",
      FIXTURE_DIR,
      "--stream-layers",
      "--ids",
      ref.input_ids.join(","),
      "-n",
      "32",
      "--ignore-eos",
      "--json",
    ]);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).new_tokens).toEqual(ref.generation.new_tokens);
    const dir = mkdtempSync(join(tmpdir(), "wasm-lm-q-"));
    try {
      const q = run(["quantize", "--model", FIXTURE_DIR, "--embed-dtype", "int8", "--int8-group", "16", "--out", dir, "--threads", "1"]);
      expect(q.code, q.err).toBe(0);
      const g = run(["generate", "--model", dir, "--stream-layers", "--ids", ref.input_ids.join(","), "-n", "4", "--ignore-eos", "--json"]);
      expect(g.code, g.err).toBe(0);
      expect(JSON.parse(g.out).new_tokens).toHaveLength(4);
      expectOneLineError(
        run(["generate", "--model", dir, "--ids", "2", "--embed-dtype", "f16"]),
        1,
        /token embedding is int8-quantized; load it with embedDType int8/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("--version prints package.json's version", () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    for (const flag of ["--version", "-v"]) {
      const r = run([flag]);
      expect(r.code, r.err).toBe(0);
      expect(r.out.trim()).toBe(pkg.version);
    }
  });

  it("generate --logprobs: the greedy token is the most likely, alternatives sorted, probabilities ≤ 1", () => {
    const r = run([
      "generate",
      "--model",
      FIXTURE_DIR,
      "--ids",
      ref.input_ids.join(","),
      "-n",
      "8",
      "--ignore-eos",
      "--logprobs",
      "5",
      "--json",
    ]);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.new_tokens).toEqual(ref.generation.new_tokens.slice(0, 8));
    expect(j.logprobs).toHaveLength(8);
    j.logprobs.forEach((t: { id: number; logprob: number; top_logprobs: { id: number; logprob: number }[] }, i: number) => {
      expect(t.id).toBe(j.new_tokens[i]);
      expect(t.top_logprobs).toHaveLength(5);
      expect(t.top_logprobs[0]).toEqual({ id: t.id, logprob: t.logprob });
      for (let k = 1; k < 5; k++) expect(t.top_logprobs[k].logprob).toBeLessThanOrEqual(t.top_logprobs[k - 1].logprob);
      expect(new Set(t.top_logprobs.map((c) => c.id)).size).toBe(5);
      const mass = t.top_logprobs.reduce((a, c) => a + Math.exp(c.logprob), 0);
      expect(mass).toBeLessThanOrEqual(1 + 1e-6);
      expect(Math.exp(t.logprob)).toBeGreaterThan(0);
    });
    // 0: the chosen token's only.
    const z = JSON.parse(
      run(["generate", "--model", FIXTURE_DIR, "--ids", ref.input_ids.join(","), "-n", "2", "--ignore-eos", "--logprobs", "0", "--json"])
        .out,
    );
    expect(z.logprobs.map((t: { top_logprobs: unknown[] }) => t.top_logprobs)).toEqual([[], []]);
    expect(z.logprobs[0].logprob).toBe(j.logprobs[0].logprob);
    // Without --logprobs there are none; they need a JSON output, and 21 is too many.
    expect(JSON.parse(run(["generate", "--model", FIXTURE_DIR, "--ids", "2", "-n", "1", "--json"]).out)).not.toHaveProperty("logprobs");
    expectOneLineError(run(["generate", "--model", FIXTURE_DIR, "--ids", "2", "--logprobs", "2"]), 2, /--logprobs needs --json or --jsonl/);
    expectOneLineError(
      run(["generate", "--model", FIXTURE_DIR, "--ids", "2", "--logprobs", "21", "--json"]),
      2,
      /--logprobs must be an integer in \[0, 20\]/,
    );
  });

  it("generate --jsonl: one object per token as it comes, then --json's object", () => {
    const args = ["generate", "--model", FIXTURE_DIR, "--ids", ref.input_ids.join(","), "-n", "12", "--ignore-eos", "--logprobs", "2"];
    const json = JSON.parse(run([...args, "--json"]).out);
    const r = run([...args, "--jsonl"]);
    expect(r.code, r.err).toBe(0);
    const lines = r.out
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const summary = lines.pop();
    expect(summary.new_tokens).toEqual(json.new_tokens);
    expect(summary.logprobs).toEqual(json.logprobs);
    expect(summary.text).toBe(json.text);
    for (const k of ["model", "input_ids", "finish_reason", "timings"]) expect(summary).toHaveProperty(k);
    const tokens = lines.filter((l) => l.id >= 0);
    expect(tokens.map((l) => l.id)).toEqual(json.new_tokens);
    expect(lines.map((l) => l.text).join("")).toBe(json.text);
    expect(tokens.map(({ id, logprob, top_logprobs }) => ({ id, logprob, top_logprobs }))).toEqual(json.logprobs);
    expectOneLineError(run(["generate", "--model", FIXTURE_DIR, "--ids", "2", "--json", "--jsonl"]), 2, /at most one of --json or --jsonl/);
  });

  it("--prompt-file (a path or '-' = stdin) gives --prompt's ids; one final newline is dropped", () => {
    const text = " Wednesday suchh been S came made One where p come"; // the reference prompt's ids after </s>
    const byPrompt = JSON.parse(run(["generate", "--model", FIXTURE_DIR, "--prompt", text, "-n", "4", "--ignore-eos", "--json"]).out);
    expect(byPrompt.input_ids).toEqual(ref.input_ids);
    const stdin = run(["generate", "--model", FIXTURE_DIR, "--prompt-file", "-", "-n", "4", "--ignore-eos", "--json"], text + "\n");
    expect(stdin.code, stdin.err).toBe(0);
    expect(JSON.parse(stdin.out).input_ids).toEqual(byPrompt.input_ids);
    expect(JSON.parse(stdin.out).new_tokens).toEqual(byPrompt.new_tokens);
    const dir = mkdtempSync(join(tmpdir(), "wasm-lm-prompt-"));
    try {
      writeFileSync(join(dir, "p.txt"), text);
      const f = run(["inspect", "--model", FIXTURE_DIR, "--prompt-file", join(dir, "p.txt"), "--json"]);
      expect(f.code, f.err).toBe(0);
      expect(JSON.parse(f.out).layers[2].top[0].id).toBe(ref.argmax[ref.argmax.length - 1]);
      expectOneLineError(
        run(["generate", "--model", FIXTURE_DIR, "--prompt-file", join(dir, "nope.txt")]),
        1,
        /--prompt-file .*nope\.txt: ENOENT/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expectOneLineError(
      run(["generate", "--model", FIXTURE_DIR, "--prompt-file", "-", "--prompt", "x"], "y"),
      2,
      /exactly one of --prompt, --prompt-file, --ids or --messages/,
    );
    expectOneLineError(
      run(["inspect", "--model", FIXTURE_DIR, "--prompt-file", "-", "--ids", "2"], "y"),
      2,
      /exactly one of --prompt, --prompt-file or --ids/,
    );
  });

  it("logits --top-k: the k largest logits of each position, largest first", () => {
    const r = run(["logits", "--model", FIXTURE_DIR, "--ids", ref.input_ids.join(","), "--top-k", "3"]);
    expect(r.code, r.err).toBe(0);
    const top: { id: number; logit: number }[][] = JSON.parse(r.out).top;
    expect(top).toHaveLength(ref.input_ids.length);
    top.forEach((row, pos) => {
      expect(row).toHaveLength(3);
      expect(row[0].id).toBe(ref.argmax[pos]);
      for (const { id, logit } of row) expect(Math.abs(logit - ref.logits[pos][id])).toBeLessThanOrEqual(1e-4);
      expect(row[1].logit).toBeLessThanOrEqual(row[0].logit);
      expect(row[2].logit).toBeLessThanOrEqual(row[1].logit);
      // Nothing left out is larger than the smallest kept.
      const kept = new Set(row.map((c) => c.id));
      const rest = ref.logits[pos].filter((_: number, id: number) => !kept.has(id));
      expect(Math.max(...rest)).toBeLessThanOrEqual(row[2].logit + 1e-4);
    });
    const last = JSON.parse(run(["logits", "--model", FIXTURE_DIR, "--ids", ref.input_ids.join(","), "--last", "--top-k", "1"]).out).top;
    expect(last).toEqual([[top[top.length - 1][0]]]);
    expectOneLineError(run(["logits", "--model", FIXTURE_DIR, "--ids", "2", "--top-k", "0"]), 2, /--top-k must be ≥ 1/);
  });

  it("a synthetic model says once on stderr that its weights are random; a directory model does not", () => {
    const s = run(["logits", "--ids", "2", "--last", "--top-k", "1"]); // the default model
    expect(s.code, s.err).toBe(0);
    expect(JSON.parse(s.out).top).toHaveLength(1); // stdout stays clean
    expect(s.err.match(/random weights/g)).toHaveLength(1);
    expect(s.err).toMatch(/^wasm-lm: synthetic:opt-125m \(the default model\) has random weights .*--model facebook\/opt-125m/);
    const g = run(["generate", "--model", "synthetic:gpt2", "--ids", "2", "-n", "1", "--json"]);
    expect(g.code, g.err).toBe(0);
    expect(g.err.trim().split("\n")).toHaveLength(1);
    expect(g.err).toMatch(/synthetic:gpt2 has random weights .*--model openai-community\/gpt2/);
    const d = run(["generate", "--model", FIXTURE_DIR, "--ids", "2", "-n", "1"]);
    expect(d.code, d.err).toBe(0);
    expect(d.err).not.toMatch(/random weights/);
  }, 120_000);

  it("--help works for every command", () => {
    for (const c of ["generate", "logits", "tokenize", "inspect", "synth", "quantize", "chat"]) {
      const r = run([c, "--help"]);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/Usage: wasm-lm/);
    }
  });

  it("synth writes a hub-style directory that generate loads", () => {
    const dir = mkdtempSync(join(tmpdir(), "wasm-lm-synth-"));
    try {
      const out = join(dir, "opt-125m-synth");
      mkdirSync(out);
      const s = run(["synth", "--preset", "opt-125m", "--seed", "3", "--dtype", "f32", "--out", out]);
      expect(s.code, s.err).toBe(0);
      for (const f of ["config.json", "model.safetensors", "vocab.json", "merges.txt"]) expect(existsSync(join(out, f))).toBe(true);
      const g = run(["generate", "--model", out, "--prompt", "Hello", "-n", "4", "--json"]);
      expect(g.code, g.err).toBe(0);
      const j = JSON.parse(g.out);
      expect(j.input_ids).toEqual([2, 31414]);
      expect(j.new_tokens.length).toBeGreaterThan(0);
      // The same weights made in memory give the same tokens.
      const mem = JSON.parse(
        run(["generate", "--model", "synthetic:opt-125m", "--seed", "3", "--prompt", "Hello", "-n", "4", "--json"]).out,
      );
      expect(mem.new_tokens).toEqual(j.new_tokens);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});

// Chat: the tiny OPT model paired (--tokenizer) with the hand-built Llama-2-style tokenizer
// (277 ids, under the model's 512; Llama-2-chat's template; </s> = 2 ends a turn).
describe("wasm-lm CLI: --tokenizer, --messages and chat", () => {
  const LLAMA_TOK = fileURLToPath(new URL("./fixtures/llama2-style-tokenizer/", import.meta.url));
  const GPT2_TOK = fileURLToPath(new URL("./fixtures/gpt2-tokenizer/", import.meta.url));
  const LLAMA_TINY = fileURLToPath(new URL("./fixtures/llama-tiny/", import.meta.url));
  const tok = loadTokenizer(LLAMA_TOK);
  const messages = [
    { role: "system", content: "Be kind." },
    { role: "user", content: "Hello world" },
  ];
  const dir = mkdtempSync(join(tmpdir(), "wasm-lm-chat-"));
  const file = (name: string, content: string) => {
    writeFileSync(join(dir, name), content);
    return join(dir, name);
  };
  const chatFile = file("chat.json", JSON.stringify(messages));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("tokenize --messages: the template with an assistant turn opened, encoded without adding special tokens", () => {
    const r = run(["tokenize", "--tokenizer", LLAMA_TOK, "--messages", chatFile, "--json"]);
    expect(r.code, r.err).toBe(0);
    const ids = JSON.parse(r.out).ids;
    expect(ids).toEqual(tok.encode("<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nHello world [/INST]", { addSpecialTokens: false }));
    expect(ids.filter((id: number) => id === 1)).toHaveLength(1); // the template's <s>, no second BOS
    // From stdin, and --tokenizer wins over -m.
    const s = run(["tokenize", "-m", GPT2_TOK, "--tokenizer", LLAMA_TOK, "--messages", "-", "--json"], JSON.stringify(messages));
    expect(JSON.parse(s.out).ids).toEqual(ids);
  });

  it("tokenize --tokenizer with text still adds the tokenizer's own special tokens", () => {
    expect(JSON.parse(run(["tokenize", "--tokenizer", LLAMA_TOK, "--text", "Hello world", "--json"]).out).ids).toEqual([1, 271, 276]);
    expect(JSON.parse(run(["tokenize", "--tokenizer", GPT2_TOK, "--text", "Hello world", "--json"]).out).ids).toEqual([15496, 995]);
  });

  it("generate --messages: the chat's prompt ids, and the reply stops at the chat stop ids", () => {
    // 48 prompt tokens + 12 fit the model's 64 positions.
    const r = run(["generate", "--model", FIXTURE_DIR, "--tokenizer", LLAMA_TOK, "--messages", chatFile, "-n", "12", "--json"]);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.input_ids).toEqual(tok.encodeChat(messages));
    // The same prompt as plain ids, never stopping: the chat run is its prefix up to the first </s>.
    const free = JSON.parse(
      run([
        "generate",
        "--model",
        FIXTURE_DIR,
        "--tokenizer",
        LLAMA_TOK,
        "--ids",
        j.input_ids.join(","),
        "-n",
        "12",
        "--ignore-eos",
        "--json",
      ]).out,
    );
    const stop = free.new_tokens.indexOf(2);
    expect(j.new_tokens).toEqual(stop < 0 ? free.new_tokens : free.new_tokens.slice(0, stop + 1));
    expect(j.finish_reason).toBe(stop < 0 ? "length" : "eos");
    for (const id of j.new_tokens) expect(id).toBeLessThan(tok.vocabSize); // ids the tokenizer cannot decode are never chosen
  });

  it("--ids needs no tokenizer; text without one names --tokenizer", () => {
    const r = run(["generate", "--model", LLAMA_TINY, "--ids", "1,5,6", "-n", "3", "--ignore-eos", "--json"]);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).new_tokens).toHaveLength(3);
    expectOneLineError(
      run(["generate", "--model", LLAMA_TINY, "--prompt", "hi"]),
      1,
      /has no tokenizer files .*pass --tokenizer DIR, or token ids with --ids/,
    );
    const t = run(["generate", "--model", LLAMA_TINY, "--tokenizer", LLAMA_TOK, "--prompt", "Hello", "-n", "2", "--ignore-eos", "--json"]);
    expect(t.code, t.err).toBe(0);
    expect(JSON.parse(t.out).input_ids).toEqual([1, 271]);
  });

  it("errors: a bad messages file, no template, a missing tokenizer directory — one line each", () => {
    expectOneLineError(
      run(["tokenize", "--tokenizer", LLAMA_TOK, "--messages", file("bad.json", "[{")]),
      1,
      /--messages .*bad\.json: not valid JSON/,
    );
    expectOneLineError(
      run(["tokenize", "--tokenizer", LLAMA_TOK, "--messages", file("role.json", '[{"role": 1, "content": "x"}]')]),
      1,
      /--messages .*role\.json: chat messages\[0\]\.role must be a string, got number/,
    );
    expectOneLineError(
      run(["generate", "--model", FIXTURE_DIR, "--messages", file("obj.json", '{"role": "user"}')]),
      1,
      /chat messages must be an array/,
    );
    expectOneLineError(
      run(["tokenize", "--tokenizer", LLAMA_TOK, "--messages", file("order.json", '[{"role": "assistant", "content": "x"}]')]),
      1,
      /chat template: Conversation roles must alternate user\/assistant\/user\/assistant\/\.\.\./,
    );
    expectOneLineError(
      run(["tokenize", "--tokenizer", GPT2_TOK, "--messages", chatFile]),
      1,
      /no chat template for the tokenizer in ".*gpt2-tokenizer\/?"/,
    );
    expectOneLineError(
      run(["generate", "--model", FIXTURE_DIR, "--messages", chatFile, "-n", "2"]),
      1,
      /no chat template for the tokenizer in ".*tokenizers\/opt\/?"/,
    );
    expectOneLineError(
      run(["generate", "--model", FIXTURE_DIR, "--tokenizer", join(dir, "nope"), "--ids", "2"]),
      1,
      /tokenizer directory .*nope.* does not exist/,
    );
    expectOneLineError(run(["tokenize", "--text", "x", "--messages", chatFile]), 2, /exactly one of --text, --text-file or --messages/);
  });

  it("chat: one reply per stdin line, the history carried into the next prompt, /exit ends it", () => {
    const chat = (args: string[], input: string) => {
      const r = run(["chat", "--model", FIXTURE_DIR, "--tokenizer", LLAMA_TOK, "-n", "6", "--json", ...args], input);
      expect(r.code, r.err).toBe(0);
      return r.out
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
    };
    const user = (content: string) => ({ role: "user", content });
    const turns = chat([], "Hello world\n\nHi again\n/exit\nnot read\n");
    expect(turns).toHaveLength(2);
    expect(turns[0].input_ids).toEqual(tok.encodeChat([user("Hello world")]));
    expect(turns[1].input_ids).toEqual(
      tok.encodeChat([user("Hello world"), { role: "assistant", content: turns[0].text }, user("Hi again")]),
    );
    // With a system message the second prompt would pass the model's 64 positions: the oldest
    // exchange is dropped, the system message kept.
    const sys = chat(["--system", "Be kind."], "Hello world\nHi again\n");
    expect(sys[0].input_ids).toEqual(tok.encodeChat(messages));
    const full = tok.encodeChat([...messages, { role: "assistant", content: sys[0].text }, user("Hi again")]);
    expect(full.length + 6).toBeGreaterThan(64);
    expect(sys[1].input_ids).toEqual(tok.encodeChat([messages[0], user("Hi again")]));
    for (const t of [...turns, ...sys]) {
      expect(t.new_tokens.length).toBeLessThanOrEqual(6);
      expect(t.text).not.toContain("</s>"); // the stop token stays out of the reply
    }
    // Streamed text mode prints each reply on its own line.
    const text = run(["chat", "--model", FIXTURE_DIR, "--tokenizer", LLAMA_TOK, "-n", "3"], "Hello world\n/reset\nHello world\n");
    expect(text.code, text.err).toBe(0);
    const [a, b] = text.out.split("\n");
    expect(a).toBe(b); // /reset: the same first turn again, greedy
    expectOneLineError(run(["chat", "--model", FIXTURE_DIR, "-n", "2"], "hi\n"), 1, /no chat template for the tokenizer/);
  });
});
