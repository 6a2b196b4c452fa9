#!/usr/bin/env node
// The wasm-lm command line: generate, logits, tokenize, inspect, synth.
// Errors are one line on stderr and exit code 1 (2 for usage errors), never a stack trace
// (set WASM_LM_DEBUG=1 to see one).
import { Command, InvalidArgumentError, Option } from "commander";
import cliProgress from "cli-progress";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { DEFAULT_MODEL, loadModel, OPT_TOKENIZER_DIR, type LoadModelOptions } from "./node.js";
import { generate, streamGenerate, topIds, type GenerateOptions, type GenerateResult, type TextCodec } from "./generate/index.js";
import { chatPrompt, streamChat } from "./generate/chat.js";
import { type ChatMessage, type Tokenizer, validateMessages } from "./tokenizer/index.js";
import { loadTokenizer } from "./tokenizer/node.js";
import { SyntheticSource } from "./models/synthetic.js";
import { configJson, syntheticConfig, SYNTHETIC_PRESETS } from "./models/families/index.js";
import { writeSafetensors } from "./formats/safetensors.js";
import { oneLine } from "./formats/types.js";
import { f32ArrayToF16Bytes } from "./formats/dtype.js";
import { inspectPrompt, formatInspection } from "./inspect.js";
import { modelTensors } from "./models/save.js";
import type { BuildChoice } from "./wasm.js";
import type { WeightDType } from "./models/weights.js";
import { Engine } from "./server/engine.js";
import { createHandler } from "./server/handler.js";
import { serveNode } from "./server/node.js";

const int = (name: string) => (v: string) => {
  if (!/^-?\d+$/.test(v)) throw new InvalidArgumentError(`${name} must be an integer`);
  return Number(v);
};
const num = (name: string) => (v: string) => {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`);
  return n;
};
const idList = (v: string) => {
  const parts = v
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (!parts.every((p) => /^\d+$/.test(p)))
    throw new InvalidArgumentError("ids must be comma-separated non-negative integers, e.g. 2,250,1345");
  return parts.map(Number);
};

interface CommonOpts {
  model: string;
  tokenizer?: string;
  build?: BuildChoice;
  threads?: number;
  dtype?: WeightDType;
  embedDtype?: WeightDType;
  streamLayers?: boolean;
  int8Group?: number;
  revision?: string;
  offline?: boolean;
  verifyChecksums?: boolean;
  seed?: number;
  json?: boolean;
}

/** package.json's version, found from this file upwards (dist/cli.js and src/cli.ts alike). */
function packageVersion(): string {
  let dir = new URL(".", import.meta.url);
  for (let up = 0; up < 3; up++, dir = new URL("..", dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL("package.json", dir), "utf8"));
      if (pkg.name === "wasm-lm" && typeof pkg.version === "string") return pkg.version;
    } catch {
      // not here: one level up
    }
  }
  return "unknown";
}

// The real model each synthetic preset has the shape of.
const REAL_MODEL: Record<string, string> = {
  "opt-125m": "facebook/opt-125m",
  gpt2: "openai-community/gpt2",
  "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
  "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B-Instruct",
};

/** The one line a synthetic model gets on stderr: its text is noise, and where real text comes from. */
function syntheticNotice(spec: string): string {
  const real = REAL_MODEL[spec.slice("synthetic:".length)] ?? "facebook/opt-125m";
  return (
    `wasm-lm: ${spec}${spec === DEFAULT_MODEL ? " (the default model)" : ""} has random weights (its text is noise): ` +
    `for real text use --model ${real}, or the hub id or directory of another supported model (OPT, GPT-2, LLaMA/SmolLM2, Qwen2)`
  );
}

/**
 * Load with a progress bar on stderr (only when it is a terminal and not in --json mode); a
 * synthetic model gets one line on stderr saying its weights are random.
 */
async function load(o: CommonOpts) {
  const t0 = performance.now();
  const bar =
    process.stderr.isTTY && !o.json
      ? new cliProgress.SingleBar(
          {
            format: "loading {bar} {percentage}% | {value}/{total} MiB | {file}",
            stream: process.stderr,
            hideCursor: true,
            clearOnComplete: true,
          },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
  let started = false;
  const step = (file: string, done: number, total: number) => {
    if (!bar) return;
    const mib = (n: number) => Math.round(n / 2 ** 20);
    if (!started) {
      bar.start(mib(total), 0, { file });
      started = true;
    }
    bar.setTotal(mib(total));
    bar.update(mib(done), { file });
  };
  const opts: LoadModelOptions = {
    build: o.build ?? "auto",
    threads: o.threads,
    dtype: o.dtype,
    embedDType: o.embedDtype,
    residentLayers: o.streamLayers ? false : undefined,
    int8Group: o.int8Group,
    revision: o.revision,
    offline: o.offline,
    verifyChecksums: o.verifyChecksums,
    seed: o.model.startsWith("synthetic:") ? (o.seed ?? 0) : undefined,
    tokenizer: o.tokenizer,
    onDownload: (p) => step(p.file, p.loaded, p.total || p.loaded),
    onProgress: (done, total) => step("weights → wasm", done, total),
  };
  let loaded;
  try {
    loaded = await loadModel(o.model, opts);
  } finally {
    bar?.stop();
  }
  const synthetic = loaded.location.startsWith("synthetic:");
  if (synthetic) process.stderr.write(syntheticNotice(loaded.location) + "\n");
  const tokenizerDir =
    o.tokenizer ??
    (synthetic || (!existsSync(join(loaded.location, "vocab.json")) && !existsSync(join(loaded.location, "tokenizer.json")))
      ? OPT_TOKENIZER_DIR
      : loaded.location);
  return { ...loaded, tokenizerDir, loadMs: performance.now() - t0 };
}

function modelOptions(cmd: Command, withSeed = true): Command {
  cmd
    .option("-m, --model <spec>", "model directory, hub id (owner/name) or synthetic:opt-125m", DEFAULT_MODEL)
    .addOption(new Option("--build <build>", "wasm build").choices(["auto", "simd", "relaxed"]).default("auto"))
    .option("--threads <n>", "threads for the big kernels (default: the available cores)", int("--threads"))
    .addOption(
      new Option(
        "--dtype <dtype>",
        "weights in memory: f32 (default), f16 (half), int8 (a quarter), q4 (4-bit blocks of 32, ~a sixth), quantized at load; a file written by quantize loads in its own",
      ).choices(["f32", "f16", "int8", "q4"]),
    )
    .option("--int8-group <n>", "int8: inputs per scale (default 64)", int("--int8-group"))
    .addOption(
      new Option(
        "--embed-dtype <dtype>",
        "the token embedding (= lm_head): default the dtype, f16 for int8 and q4; q4 shrinks OPT-125M's 38.6M-weight table to a sixth of f16's bytes",
      ).choices(["f32", "f16", "int8", "q4"]),
    )
    .option("--stream-layers", "hold one decoder layer in memory at a time, reading each from the checkpoint as it runs")
    .option("--revision <rev>", "hub revision (branch, tag or commit)", "main")
    .option("--offline", "use only the local hub cache (also HF_HUB_OFFLINE=1)")
    .option("--verify-checksums", "check pytorch_model*.bin files against their zip CRC-32s before loading (reads every byte once more)");
  if (withSeed) cmd.option("--seed <n>", "seed of the synthetic model's weights and of sampling", int("--seed"));
  return cmd;
}

/** --kv-dtype, on the commands that run the model over a KV cache (generate, chat, logits, serve). */
function kvDtypeOption(cmd: Command): Command {
  return cmd.addOption(
    new Option(
      "--kv-dtype <dtype>",
      "keys and values in the KV cache: f32 (default) or f16 (half the cache's memory and of the bytes attention reads per token; each rounded to a half float)",
    ).choices(["f32", "f16"]),
  );
}

const TOKENIZER_HELP = "load the tokenizer (and its chat template) from this directory instead of the model's";
const PROMPT_FILE_HELP = "read the prompt from a file ('-' = stdin); one final newline is dropped";
const MESSAGES_HELP =
  'a chat: a JSON array of {"role", "content"} messages (\'-\' = stdin), rendered with the tokenizer\'s chat template and an assistant turn opened';

// Set before the subcommands are made: they inherit both.
const program = new Command("wasm-lm")
  .description("small language models (OPT, GPT-2, LLaMA, Qwen2) in WebAssembly")
  .exitOverride()
  .version(packageVersion(), "-v, --version", "print the version")
  .configureOutput({
    outputError: (str, write) =>
      write(
        `wasm-lm: ${str
          .replace(/^error: /, "")
          .trim()
          .replace(/\s*\n\s*/g, " ")} (see --help)\n`,
      ),
  });

kvDtypeOption(
  modelOptions(program.command("generate").description("generate text from a prompt (greedy unless a sampling option is given)")),
)
  .option("-p, --prompt <text>", "prompt text")
  .option("--prompt-file <path>", PROMPT_FILE_HELP)
  .option("--ids <ids>", "prompt token ids, comma-separated (instead of --prompt)", idList)
  .option("--messages <file>", MESSAGES_HELP + "; generation also stops at the template's end-of-turn tokens")
  .option("--tokenizer <dir>", TOKENIZER_HELP)
  .option("-n, --max-new-tokens <n>", "new tokens at most", int("--max-new-tokens"), 32)
  .option("--temperature <t>", "sampling temperature (> 0)", num("--temperature"))
  .option("--top-k <k>", "sample from the k most likely tokens", int("--top-k"))
  .option("--top-p <p>", "nucleus sampling: smallest set with probability ≥ p", num("--top-p"))
  .option("--repetition-penalty <r>", "penalise tokens already present (> 0, 1 = off)", num("--repetition-penalty"))
  .option("--stop <text...>", "stop when the text contains one of these strings")
  .option("--ignore-eos", "keep generating after the end-of-sequence token")
  .option("--truncate", "keep the last tokens of a prompt longer than the model's context")
  .option("--logprobs <n>", "with --json or --jsonl: each new token's log-probability, and the n most likely tokens' (0-20)", (v) => {
    const n = int("--logprobs")(v);
    if (n < 0 || n > 20) throw new InvalidArgumentError("--logprobs must be an integer in [0, 20]");
    return n;
  })
  .option("--json", "print one JSON object (input_ids, new_tokens, text, finish_reason, logprobs with --logprobs, timings)")
  .option(
    "--jsonl",
    'print one JSON object per token as it is generated ({"id", "text"} and "logprob", "top_logprobs" with --logprobs), then --json\'s object',
  )
  .action(async (o) => {
    if ([o.prompt, o.promptFile, o.ids, o.messages].filter((v) => v !== undefined).length !== 1)
      throw new UsageError("give exactly one of --prompt, --prompt-file, --ids or --messages");
    if (o.json && o.jsonl) throw new UsageError("give at most one of --json or --jsonl");
    if (o.logprobs !== undefined && !o.json && !o.jsonl) throw new UsageError("--logprobs needs --json or --jsonl (they print them)");
    // A bad file fails before the model loads.
    const messages = o.messages === undefined ? undefined : readMessages(o.messages);
    if (o.promptFile !== undefined) o.prompt = readPromptFile(o.promptFile);
    const loaded = await load({ ...o, json: o.json || o.jsonl });
    const { model, loadMs } = loaded;
    const tokenizer = o.ids === undefined ? needTokenizer(loaded) : (loaded.tokenizer ?? IDS_ONLY);
    const gen: GenerateOptions = {
      ...generationOptions(o),
      stopStrings: o.stop,
      ignoreEos: o.ignoreEos,
      truncate: o.truncate,
      logprobs: o.logprobs,
    };
    let prompt: string | number[] = o.ids ?? o.prompt;
    if (messages) {
      // As transformers' apply_chat_template(add_generation_prompt=True, tokenize=True); the turn
      // ends at the chat stop ids, and at the model's EOS unless --ignore-eos.
      ({ ids: prompt, stopTokenIds: gen.stopTokenIds } = chatPrompt(model, needTokenizer(loaded), messages, { ignoreEos: o.ignoreEos }));
    }
    const summary = (r: GenerateResult) =>
      JSON.stringify({
        model: o.model,
        build: model.build,
        dtype: model.dtype,
        kv_dtype: gen.kvDtype ?? "f32",
        threads: model.threads,
        ...r,
        timings: { load_ms: loadMs, ...r.timings },
      }) + "\n";
    if (o.json) {
      process.stdout.write(summary(await generate(model, loaded.tokenizer ?? undefined, prompt, gen)));
      return;
    }
    if (o.jsonl) {
      // The events as streamGenerate yields them (id -1: text held back until the end), then the summary.
      const it = streamGenerate(model, loaded.tokenizer ?? undefined, prompt, gen);
      let r = await it.next();
      for (; !r.done; r = await it.next()) process.stdout.write(JSON.stringify(r.value) + "\n");
      process.stdout.write(summary(r.value));
      return;
    }
    const input = typeof prompt === "string" ? prompt : tokenizer.decode(prompt);
    process.stdout.write(input);
    const it = streamGenerate(model, tokenizer, prompt, gen);
    let r = await it.next();
    while (!r.done) {
      process.stdout.write(r.value.text);
      r = await it.next();
    }
    const t = r.value.timings;
    process.stdout.write("\n");
    process.stderr.write(
      `${r.value.new_tokens.length} tokens, ${t.tokens_per_second.toFixed(1)} tokens/s ` +
        `(load ${loadMs.toFixed(0)} ms, prefill ${t.prefill_ms.toFixed(0)} ms, decode ${t.decode_ms_per_token.toFixed(1)} ms/token, ` +
        `${model.dtype}, KV ${gen.kvDtype ?? "f32"}, build ${model.build}, ${model.threads} thread${model.threads > 1 ? "s" : ""}, ` +
        `stop: ${r.value.finish_reason})\n`,
    );
  });

kvDtypeOption(
  modelOptions(
    program
      .command("chat")
      .description("an interactive chat with the model's chat template: one user message per line on stdin, /reset, /exit"),
  ),
)
  .option("--tokenizer <dir>", TOKENIZER_HELP)
  .option("--system <text>", "a system message to start the conversation with")
  .option("-n, --max-new-tokens <n>", "new tokens per reply at most", int("--max-new-tokens"), 256)
  .option("--temperature <t>", "sampling temperature (> 0)", num("--temperature"))
  .option("--top-k <k>", "sample from the k most likely tokens", int("--top-k"))
  .option("--top-p <p>", "nucleus sampling: smallest set with probability ≥ p", num("--top-p"))
  .option("--repetition-penalty <r>", "penalise tokens already present (> 0, 1 = off)", num("--repetition-penalty"))
  .option("--json", "one JSON object per reply (input_ids, new_tokens, text, finish_reason) instead of streamed text")
  .action(async (o) => {
    const loaded = await load(o);
    const { model } = loaded;
    const tokenizer = needTokenizer(loaded);
    if (tokenizer.chatTemplate === null) tokenizer.applyChatTemplate([]); // the one-line "no chat template" error, before any input
    const start: ChatMessage[] = o.system === undefined ? [] : [{ role: "system", content: o.system }];
    let history = [...start];
    const gen: GenerateOptions = generationOptions(o);
    const interactive = process.stdin.isTTY && !o.json;
    const lines = createInterface({ input: process.stdin, terminal: false });
    if (interactive) process.stdout.write("> ");
    for await (const line of lines) {
      const text = line.trim();
      if (text === "/exit" || text === "/quit") break;
      if (text === "/reset") {
        history = [...start];
      } else if (text !== "") {
        history.push({ role: "user", content: line });
        // Keep the prompt and the reply within the context: drop the oldest exchanges first.
        while (
          history.length > start.length + 1 &&
          chatPrompt(model, tokenizer, history).ids.length + gen.maxNewTokens! > model.dims.maxPositions
        ) {
          history.splice(start.length, history[start.length + 1]?.role === "assistant" ? 2 : 1);
        }
        const it = streamChat(model, tokenizer, history, { ...gen, truncate: true });
        let r = await it.next();
        while (!r.done) {
          if (!o.json) process.stdout.write(r.value.text);
          r = await it.next();
        }
        history.push({ role: "assistant", content: r.value.text });
        const { input_ids, new_tokens, finish_reason } = r.value;
        process.stdout.write(o.json ? JSON.stringify({ input_ids, new_tokens, text: r.value.text, finish_reason }) + "\n" : "\n");
      }
      if (interactive) process.stdout.write("> ");
    }
    lines.close();
  });

kvDtypeOption(modelOptions(program.command("logits").description("vocabulary logits for every position of a sequence of ids")))
  .requiredOption("--ids <ids>", "token ids, comma-separated", idList)
  .option("--last", "only the last position")
  .option(
    "--top-k <n>",
    'only the n largest logits of each position: {"top": [[{"id", "logit"}, …] per position]}, largest first',
    int("--top-k"),
  )
  .option("--json", 'JSON, the only format: {"logits": [[…vocabulary floats…] per position]}, or --top-k\'s {"top": …}')
  .action(async (o) => {
    if (o.topK !== undefined && o.topK < 1) throw new UsageError("--top-k must be ≥ 1");
    const { model } = await load({ ...o, json: true });
    const r = model.forward([o.ids], { logits: o.last ? "last" : "all", kvDtype: o.kvDtype });
    const V = r.logitsShape[2];
    const rows = Array.from({ length: r.logitsShape[1] }, (_, i) => r.logits.subarray(i * V, (i + 1) * V));
    process.stdout.write(
      JSON.stringify(
        o.topK === undefined
          ? { logits: rows.map((row) => Array.from(row)) }
          : { top: rows.map((row) => topIds(row, o.topK).map((id) => ({ id, logit: row[id] }))) },
      ) + "\n",
    );
  });

program
  .command("tokenize")
  .description("token ids of a text (with the tokenizer's special tokens, e.g. OPT's leading </s>) or of a chat")
  .option("-m, --model <dir>", "model directory or a directory holding only tokenizer files (default: the OPT tokenizer shipped)")
  .option("--tokenizer <dir>", "the tokenizer directory (the same as --model; wins over it)")
  .option("--text <text>", "the text")
  .option("--text-file <path>", "read the text from a file ('-' = stdin)")
  .option("--messages <file>", MESSAGES_HELP + "; encoded without adding special tokens (the template writes them)")
  .option("--no-special", "do not add the special tokens (e.g. the leading </s>)")
  .option("--json", 'print {"ids": […]} (the default and only format)')
  .action((o) => {
    if ([o.text, o.textFile, o.messages].filter((v) => v !== undefined).length !== 1)
      throw new UsageError("give exactly one of --text, --text-file or --messages");
    const messages = o.messages === undefined ? undefined : readMessages(o.messages);
    const text = o.text ?? (o.textFile === undefined ? "" : readFileSync(o.textFile === "-" ? 0 : o.textFile, "utf8"));
    const tok = loadTokenizer(o.tokenizer ?? o.model ?? OPT_TOKENIZER_DIR);
    const ids = messages ? tok.encodeChat(messages) : tok.encode(text, { addSpecialTokens: o.special });
    process.stdout.write(JSON.stringify({ ids }) + "\n");
  });

modelOptions(program.command("inspect").description("what each layer does: hidden-state norms, logit lens, attention"))
  .option("--tokenizer <dir>", TOKENIZER_HELP)
  .option("-p, --prompt <text>", "prompt text")
  .option("--prompt-file <path>", PROMPT_FILE_HELP)
  .option("--ids <ids>", "prompt token ids, comma-separated (instead of --prompt)", idList)
  .option("--top <k>", "candidates per layer", int("--top"), 5)
  .option("--json", "print the inspection as JSON")
  .action(async (o) => {
    if ([o.prompt, o.promptFile, o.ids].filter((v) => v !== undefined).length !== 1)
      throw new UsageError("give exactly one of --prompt, --prompt-file or --ids");
    if (o.promptFile !== undefined) o.prompt = readPromptFile(o.promptFile);
    const loaded = await load(o);
    const tokenizer = o.prompt !== undefined ? needTokenizer(loaded) : (loaded.tokenizer ?? IDS_ONLY);
    const r = await inspectPrompt(loaded.model, tokenizer, o.ids ?? o.prompt, { top: o.top });
    process.stdout.write(o.json ? JSON.stringify(r) + "\n" : formatInspection(r));
  });

program
  .command("synth")
  .description("write a seeded random model in the Hugging Face layout (config.json + model.safetensors + tokenizer)")
  .option("--preset <name>", `model shape: ${Object.keys(SYNTHETIC_PRESETS).join(", ")}`, "opt-125m")
  .option("--seed <n>", "weights seed", int("--seed"), 0)
  .addOption(new Option("--dtype <dtype>", "stored dtype").choices(["f32", "f16"]).default("f32"))
  .requiredOption("--out <dir>", "output directory")
  .action((o) => {
    const config = syntheticConfig(o.preset);
    const src = new SyntheticSource(config, o.seed);
    mkdirSync(o.out, { recursive: true });
    const tensors = src.tensors().map((t) => {
      const f = new Float32Array(t.shape.reduce((a, b) => a * b, 1));
      src.readF32(t.name, f);
      return o.dtype === "f16"
        ? { name: t.name, dtype: "F16" as const, shape: t.shape, data: f32ArrayToF16Bytes(f) }
        : { name: t.name, dtype: "F32" as const, shape: t.shape, data: new Uint8Array(f.buffer) };
    });
    writeFileSync(
      join(o.out, "model.safetensors"),
      writeSafetensors(tensors, { format: "pt", "wasm-lm-synthetic": `${o.preset} seed ${o.seed}` }),
    );
    writeFileSync(join(o.out, "config.json"), configJson(config, { torch_dtype: o.dtype === "f16" ? "float16" : "float32" }));
    for (const f of ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]) {
      if (existsSync(join(OPT_TOKENIZER_DIR, f))) copyFileSync(join(OPT_TOKENIZER_DIR, f), join(o.out, f));
    }
    process.stderr.write(`wrote ${o.out} (${o.preset}, seed ${o.seed}, ${o.dtype})\n`);
  });

modelOptions(
  program
    .command("quantize")
    .description("save a model's weights in the dtype they are loaded in (int8 by default), as a Hugging Face directory"),
)
  .requiredOption("--out <dir>", "output directory (config.json + model.safetensors + tokenizer)")
  .option("--tokenizer <dir>", "copy the tokenizer files from this directory instead of the model's")
  .action(async (o) => {
    o.dtype ??= "int8";
    const { model, tokenizerDir } = await load(o);
    const { tensors, metadata } = modelTensors(model);
    mkdirSync(o.out, { recursive: true });
    writeFileSync(join(o.out, "model.safetensors"), writeSafetensors(tensors, metadata));
    writeFileSync(join(o.out, "config.json"), configJson(model.config));
    for (const f of [
      "vocab.json",
      "merges.txt",
      "tokenizer.json",
      "tokenizer_config.json",
      "special_tokens_map.json",
      "chat_template.jinja",
      "generation_config.json",
    ]) {
      if (existsSync(join(tokenizerDir, f))) copyFileSync(join(tokenizerDir, f), join(o.out, f));
    }
    process.stderr.write(`wrote ${o.out} (${model.dtype}${model.dtype === "int8" ? `, group ${model.weights.format.group}` : ""})\n`);
  });

kvDtypeOption(
  modelOptions(
    program
      .command("serve")
      .description("serve the model over HTTP with an OpenAI-compatible API (/v1/completions, /v1/chat/completions, /v1/models, /health)"),
  ),
)
  .option("--tokenizer <dir>", TOKENIZER_HELP)
  .option("--host <host>", "address to listen on", "127.0.0.1")
  .option("--port <n>", "port to listen on (0: any free one)", int("--port"), 8080)
  .option("--api-key <key>", "require 'Authorization: Bearer <key>' on /v1/* (or set WASM_LM_API_KEY)")
  .option("--model-id <name>", "the model's name in the API (default: the --model spec)")
  .option("--max-batch <n>", "requests decoded together at most (KV-cache slots; default 8)", int("--max-batch"))
  .option("--max-queue <n>", "requests waiting for a slot at most; more get 429 (default 64)", int("--max-queue"))
  .option("--ctx <n>", "context of each slot: prompt + completion tokens (default: the model's, at most 2048)", int("--ctx"))
  .option("--max-body <bytes>", "largest request body (default 1048576)", int("--max-body"))
  .option("--cors <origin>", "allow browser requests from this origin ('*' for any)")
  .action(async (o) => {
    const apiKey: string | undefined = o.apiKey ?? (process.env.WASM_LM_API_KEY || undefined);
    const { model, tokenizer } = await load(o);
    const engine = new Engine(model, {
      maxBatch: o.maxBatch,
      maxQueue: o.maxQueue,
      ctx: o.ctx,
      kvDtype: o.kvDtype,
      decodable: tokenizer?.vocabSize,
    });
    const modelId: string = o.modelId ?? o.model;
    const handler = createHandler({
      engine,
      tokenizer,
      modelId,
      eosTokenIds: model.dims.eos,
      apiKey,
      maxBodyBytes: o.maxBody,
      cors: o.cors,
    });
    const server = await serveNode(handler, { host: o.host, port: o.port });
    process.stderr.write(`wasm-lm: serving ${modelId} at ${server.url}/v1${tokenizer ? "" : " (no tokenizer: token-id prompts only)"}\n`);
    // SIGINT/SIGTERM: stop accepting, let the requests in flight finish, exit 0; a second signal exits at once.
    await new Promise<void>((resolve) => {
      const stop = () => {
        process.once("SIGINT", () => process.exit(130));
        process.once("SIGTERM", () => process.exit(143));
        const { active, queued } = engine.stats;
        process.stderr.write(`wasm-lm: shutting down after ${active + queued} request${active + queued === 1 ? "" : "s"} in flight\n`);
        void Promise.all([engine.drain(), server.close()]).then(() => resolve());
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
    process.exit(0);
  });

class UsageError extends Error {}

/** The length, sampling and KV-cache options generate and chat share, from their flags. */
function generationOptions(o: GenerateOptions): GenerateOptions {
  return {
    kvDtype: o.kvDtype,
    maxNewTokens: o.maxNewTokens,
    temperature: o.temperature,
    topK: o.topK,
    topP: o.topP,
    repetitionPenalty: o.repetitionPenalty,
    seed: o.seed,
  };
}

/** The loaded model's tokenizer, or an error saying how to get one (text needs a tokenizer). */
function needTokenizer(loaded: { tokenizer: Tokenizer | null; location: string }): Tokenizer {
  if (!loaded.tokenizer)
    throw new Error(
      `${loaded.location} has no tokenizer files (tokenizer.json, or vocab.json + merges.txt): pass --tokenizer DIR, or token ids with --ids`,
    );
  return loaded.tokenizer;
}

/** A prompt from a file ('-' = stdin), one final newline dropped (an editor's, not the prompt's). */
function readPromptFile(path: string): string {
  try {
    return readFileSync(path === "-" ? 0 : path, "utf8").replace(/\r?\n$/, "");
  } catch (e) {
    throw new Error(`${path === "-" ? "--prompt-file (stdin)" : `--prompt-file ${path}`}: ${(e as Error).message}`);
  }
}

/** An OpenAI-style chat from a JSON file ('-' = stdin), checked: one-line errors naming the file. */
function readMessages(path: string): ChatMessage[] {
  const where = path === "-" ? "--messages (stdin)" : `--messages ${path}`;
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path === "-" ? 0 : path, "utf8"));
  } catch (e) {
    throw new Error(`${where}: ${e instanceof SyntaxError ? "not valid JSON: " : ""}${(e as Error).message}`);
  }
  try {
    validateMessages(value);
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`);
  }
  return value;
}

/** For a model without a tokenizer given token ids: tokens shown as <id>. */
const IDS_ONLY: TextCodec = {
  encode: () => {
    throw new Error("a text prompt needs a tokenizer");
  },
  decode: (ids) => ids.map((id) => `<${id}>`).join(""),
};

try {
  await program.parseAsync(process.argv);
} catch (e) {
  const err = e as Error & { code?: string; exitCode?: number };
  if (err.code?.startsWith("commander.")) {
    // commander already printed its message (or help/version).
    process.exit(err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help" ? 0 : 2);
  }
  if (process.env.WASM_LM_DEBUG) console.error(err);
  // One inert line whatever the message quotes from a file: line breaks and control characters
  // (CR, ESC…, which could rewrite the terminal) escaped, and a sane length.
  const msg = String(err?.message ?? e).replace(/^wasm-lm: /, "");
  const line = oneLine(msg.replace(/\n/g, " "), 2000);
  process.stderr.write(`wasm-lm: ${line}\n`);
  process.exit(e instanceof UsageError ? 2 : 1);
}
