// npm run test:examples — runs every file in examples/ as a newcomer would, against small models,
// and checks what it prints or serves against the CLI's `generate --json` at temperature 0 (greedy):
//
//   node/generate      examples/node/generate.mjs: its streamed text = the CLI's text
//                      (synthetic:opt-125m, the default; the LLaMA fixture with a tokenizer)
//   node/serve         examples/node/serve.mjs (node:http), then requests through the `openai`
//   deno/serve         client: models.list, completions (plain and streamed) = the CLI's text,
//   bun/serve          a token-id prompt's token_ids = the CLI's new_tokens, chat completions =
//   workerd            `generate --messages`; each on synthetic:opt-125m, the LLaMA fixture with
//                      tokenizer files and the GPT-2 fixture (ids only). The Worker example
//                      (examples/workerd: build.mjs + config.capnp) streams the fixtures from a
//                      local HTTP server answering Range requests; two requests at once both
//                      succeed (one answered 429 and retried by the client).
//   browser            examples/browser (build.mjs, index.html, a module Web Worker) in Debian's
//                      headless Chromium on a cross-origin isolated page: the page's streamed text
//                      and token count = the CLI's, with the model from a local server.
//
// Models: test/fixtures/llama-tiny + llama2-style-tokenizer (copied into one directory), gpt2-tiny,
// synthetic:opt-125m. Needs `npm run build`. One line per example, then "examples: N passed, M
// failed"; exit code 1 on any failure. `--only <name>` runs examples whose name contains it.
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import OpenAI from "openai";
import { serveStatic } from "./static.mjs";
import { CHROMIUM_ARGS } from "../browser/chromium.mjs";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const EX = join(ROOT, "examples");
const FIX = join(ROOT, "test/fixtures");
const bin = (name) => join(ROOT, "node_modules/.bin", name);
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const TIMEOUT_MS = 180_000;
const VERBOSE = !!process.env.VERBOSE;
const { values: args } = parseArgs({ options: { only: { type: "string" } } });

for (const f of ["dist/index.js", "dist/cli.js", "build/wasm-lm.simd.wasm"]) {
  if (!existsSync(join(ROOT, f))) {
    console.error(`test:examples: ${f} missing: run 'npm run build' first`);
    process.exit(1);
  }
}

const tmp = mkdtempSync(join(tmpdir(), "wasm-lm-examples-"));
// The LLaMA fixture with tokenizer files (a 280-token byte-fallback BPE with a chat template): text in and out.
const LLAMA = join(tmp, "llama-tiny");
copyDir([join(FIX, "llama-tiny"), join(FIX, "llama2-style-tokenizer")], LLAMA);
const GPT2 = join(FIX, "gpt2-tiny"); // no tokenizer files: token ids only

const PROMPT = "The meaning of life is";
const CHAT = [{ role: "user", content: "Hi there" }];
const chatFile = join(tmp, "chat.json");
writeFileSync(chatFile, JSON.stringify(CHAT));

function copyDir(froms, to) {
  mkdirSync(to, { recursive: true });
  for (const from of froms) {
    for (const f of readdirSync(from)) if (!existsSync(join(to, f))) copyFileSync(join(from, f), join(to, f));
  }
}

/** The CLI's greedy generation: the reference every example must reproduce. */
const refs = new Map();
function cli(model, input, maxNewTokens) {
  const key = JSON.stringify([model, input, maxNewTokens]);
  if (!refs.has(key)) {
    const how = Array.isArray(input) ? ["--ids", input.join(",")] : input.messages ? ["--messages", input.messages] : ["--prompt", input];
    const r = spawnSync(
      process.execPath,
      [join(ROOT, "dist/cli.js"), "generate", "--model", model, ...how, "--max-new-tokens", String(maxNewTokens), "--json"],
      { encoding: "utf8", timeout: 120_000 },
    );
    if (r.status !== 0) throw new Error(`wasm-lm generate --model ${model}: ${r.stderr.trim() || `exit ${r.status}`}`);
    refs.set(key, JSON.parse(r.stdout));
  }
  return refs.get(key);
}

/** Start a long-running example; resolves with its output once `ready` matches a line of stdout. */
function start(cmd, argv, { ready, env = {}, cwd = ROOT } = {}) {
  const child = spawn(cmd, argv, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
  const proc = { child, out: "", err: "", exited: null };
  proc.stop = async () => {
    if (proc.exited) return proc.exited;
    try {
      process.kill(-child.pid, "SIGINT");
    } catch {
      /* gone */
    }
    const t = setTimeout(() => {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }, 5000);
    await proc.done;
    clearTimeout(t);
    return proc.exited;
  };
  proc.done = new Promise((resolve) =>
    child.on("close", (code, signal) => {
      proc.exited = { code, signal };
      resolve(proc.exited);
    }),
  );
  child.stdout.setEncoding("utf8").on("data", (d) => {
    proc.out += d;
    if (VERBOSE) process.stdout.write(d);
  });
  child.stderr.setEncoding("utf8").on("data", (d) => {
    proc.err += d;
    if (VERBOSE) process.stderr.write(d);
  });
  if (!ready) return Promise.resolve(proc);
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = ready.exec(proc.out);
      if (m) {
        clearInterval(poll);
        proc.match = m;
        resolve(proc);
      }
    };
    const poll = setInterval(check, 50);
    child.on("error", (e) => {
      clearInterval(poll);
      reject(new Error(`could not start ${cmd}: ${e.message}`));
    });
    proc.done.then(() => {
      clearInterval(poll);
      reject(
        new Error(
          `${cmd.split("/").pop()} exited (${proc.exited.code ?? proc.exited.signal}) before it was ready: ${tail(proc.err || proc.out)}`,
        ),
      );
    });
  });
}

const tail = (s) => s.trim().split("\n").slice(-3).join(" | ").slice(0, 400);

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Run a whole command to its end (bounded); its stdout, stderr and exit code. */
async function run(cmd, argv, opts) {
  const p = await start(cmd, argv, opts);
  const timer = setTimeout(() => {
    try {
      process.kill(-p.child.pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }, 120_000);
  const { code, signal } = await p.done;
  clearTimeout(timer);
  return { code: code ?? signal, stdout: p.out, stderr: p.err };
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const show = (v) => JSON.stringify(v).slice(0, 160);

/**
 * The OpenAI-compatible checks on a running server. kind "text": completions (plain and streamed)
 * from a text prompt = the CLI's text, and chat when the tokenizer has a template; "ids": a
 * token-id prompt's token_ids = the CLI's new_tokens. Returns the failures.
 */
async function checkServer(baseURL, { model, kind, chat = false }, retries = 0) {
  const failures = [];
  const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: retries, timeout: 60_000 });
  const ids = (await client.models.list()).data.map((m) => m.id);
  if (ids.length !== 1) failures.push(`models.list: ${show(ids)}`);
  const id = ids[0];
  const n = 8;
  if (kind === "text") {
    const ref = cli(model, PROMPT, n);
    const c = await client.completions.create({ model: id, prompt: PROMPT, max_tokens: n, temperature: 0 });
    if (c.choices[0].text !== ref.text) failures.push(`completion ${show(c.choices[0].text)} ≠ CLI ${show(ref.text)}`);
    if (c.usage?.completion_tokens !== ref.new_tokens.length)
      failures.push(`usage.completion_tokens ${c.usage?.completion_tokens} ≠ ${ref.new_tokens.length}`);
    let streamed = "";
    let chunks = 0;
    for await (const chunk of await client.completions.create({ model: id, prompt: PROMPT, max_tokens: n, temperature: 0, stream: true })) {
      streamed += chunk.choices[0]?.text ?? "";
      chunks++;
    }
    if (streamed !== ref.text) failures.push(`streamed completion ${show(streamed)} ≠ CLI ${show(ref.text)}`);
    if (chunks < 2) failures.push(`streamed in ${chunks} chunk(s)`);
    if (chat) {
      const chatRef = cli(model, { messages: chatFile }, n);
      const r = await client.chat.completions.create({ model: id, messages: CHAT, max_tokens: n, temperature: 0 });
      const text = r.choices[0].message.content;
      if (text !== chatRef.text) failures.push(`chat ${show(text)} ≠ CLI --messages ${show(chatRef.text)}`);
    }
  } else {
    const prompt = [1, 100, 200, 300];
    const ref = cli(model, prompt, n);
    const c = await client.completions.create({ model: id, prompt, max_tokens: n, temperature: 0, return_token_ids: true });
    if (!same(c.choices[0].token_ids, ref.new_tokens))
      failures.push(`token_ids ${show(c.choices[0].token_ids)} ≠ CLI ${show(ref.new_tokens)}`);
  }
  return failures;
}

const SERVED = [
  { name: "synthetic:opt-125m", spec: "synthetic:opt-125m", model: "synthetic:opt-125m", kind: "text" },
  { name: "llama-tiny", spec: LLAMA, model: LLAMA, kind: "text", chat: true },
  { name: "gpt2-tiny", spec: GPT2, model: GPT2, kind: "ids" },
];

/** A server example (argv: [model] [port]) against each served model. */
function serverExample(name, cmd, argvFor, models = SERVED) {
  return {
    name,
    async run() {
      const failures = [];
      const notes = [];
      for (const m of models) {
        const port = await freePort();
        const p = await start(cmd, argvFor(m.spec, port), { ready: /serving .* at (http:\/\/\S+\/v1)/ });
        try {
          const f = await checkServer(p.match[1], m);
          failures.push(...f.map((x) => `${m.name}: ${x}`));
          notes.push(m.name);
        } catch (e) {
          failures.push(`${m.name}: ${e.message}`);
        } finally {
          const { code, signal } = await p.stop();
          if (code !== 0) failures.push(`${m.name}: after SIGINT the server exited with ${code ?? signal}: ${tail(p.err)}`);
        }
      }
      return { failures, detail: notes.join(", ") };
    },
  };
}

const EXAMPLES = [
  {
    name: "node/generate",
    async run() {
      const failures = [];
      for (const [model, argv] of [
        ["synthetic:opt-125m", []],
        [LLAMA, [LLAMA, PROMPT, "16"]],
      ]) {
        const r = await run(process.execPath, [join(EX, "node/generate.mjs"), ...argv]);
        const ref = cli(model, PROMPT, argv[2] ? Number(argv[2]) : 24);
        if (r.code !== 0) {
          failures.push(`${model}: exit ${r.code}: ${tail(r.stderr)}`);
          continue;
        }
        if (r.stdout !== `${PROMPT}${ref.text}\n`) failures.push(`${model}: printed ${show(r.stdout)}, CLI ${show(PROMPT + ref.text)}`);
        if (model.startsWith("synthetic:") && !/random weights/.test(r.stderr)) failures.push("no notice that synthetic weights are noise");
      }
      return { failures, detail: "synthetic:opt-125m, llama-tiny" };
    },
  },
  serverExample("node/serve", process.execPath, (spec, port) => [join(EX, "node/serve.mjs"), spec, String(port)]),
  serverExample("deno/serve", bin("deno"), (spec, port) => [
    "run",
    "--allow-read",
    "--allow-net",
    "--no-prompt",
    join(EX, "deno/serve.ts"),
    spec,
    String(port),
  ]),
  serverExample("bun/serve", bin("bun"), (spec, port) => [join(EX, "bun/serve.ts"), spec, String(port)]),
  {
    name: "workerd",
    async run() {
      // The Worker as its README says: build.mjs, then `workerd serve config.capnp` with MODEL_URL.
      const dir = join(tmp, "workerd");
      const b = await run(process.execPath, [join(EX, "workerd/build.mjs"), join(dir, "out")]);
      if (b.code !== 0) return { failures: [`build.mjs: ${tail(b.stderr)}`] };
      copyFileSync(join(EX, "workerd/config.capnp"), join(dir, "config.capnp"));
      const storage = await serveStatic([
        ["/llama-tiny/", LLAMA],
        ["/gpt2-tiny/", GPT2],
      ]);
      const failures = [];
      try {
        for (const m of SERVED.filter((s) => !s.spec.startsWith("synthetic:"))) {
          const port = await freePort();
          const p = await start(bin("workerd"), ["serve", join(dir, "config.capnp"), "--socket-addr", `http=127.0.0.1:${port}`], {
            env: { MODEL_URL: `${storage.url}/${m.name}/`, MODEL_ID: m.name },
          });
          try {
            await waitForHttp(`http://127.0.0.1:${port}/health`, p);
            const before = storage.ranges;
            failures.push(...(await checkServer(`http://127.0.0.1:${port}/v1`, m, 2)).map((x) => `${m.name}: ${x}`));
            if (m.kind === "text") {
              // One model and engine per isolate, shared by its requests (after the ones above): three
              // at once — two decode together, the third waits for a slot — each get the CLI's text.
              const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0 });
              const ref = cli(m.model, PROMPT, 8);
              const all = await Promise.all(
                [0, 1, 2].map(() => client.completions.create({ model: m.name, prompt: PROMPT, max_tokens: 8, temperature: 0 })),
              );
              if (!all.every((c) => c.choices[0].text === ref.text))
                failures.push(`${m.name}: three concurrent requests: ${show(all.map((c) => c.choices[0].text))}`);
            }
            if (storage.ranges === before) failures.push(`${m.name}: the Worker made no Range request`);
          } catch (e) {
            failures.push(`${m.name}: ${e.message}${p.err ? ` (${tail(p.err)})` : ""}`);
          } finally {
            await p.stop();
          }
          if (/error/i.test(p.err)) failures.push(`${m.name}: workerd logged: ${tail(p.err)}`);
        }
      } finally {
        await storage.close();
      }
      return { failures, detail: `llama-tiny, gpt2-tiny streamed by ${storage.ranges} range requests` };
    },
  },
  {
    name: "browser",
    async run() {
      if (!existsSync(CHROMIUM)) return { failures: [`${CHROMIUM} not found: apt-get install -y chromium, or set CHROMIUM_PATH`] };
      const out = join(tmp, "browser-out");
      const b = await run(process.execPath, [join(EX, "browser/build.mjs"), out]);
      if (b.code !== 0) return { failures: [`build.mjs: ${tail(b.stderr)}`] };
      const server = await serveStatic(
        [
          ["/out/", out],
          ["/models/llama-tiny/", LLAMA],
          ["/", join(EX, "browser")],
        ],
        { isolated: true },
      );
      const { chromium } = await import("playwright-core");
      const context = await chromium.launchPersistentContext(join(tmp, "profile"), {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_ARGS,
      });
      const failures = [];
      let detail = "";
      try {
        const page = await context.newPage();
        const errors = [];
        page.on("pageerror", (e) => errors.push(e.message));
        const n = 16;
        const ref = cli(LLAMA, PROMPT, n);
        const q = new URLSearchParams({ model: `${server.url}/models/llama-tiny/`, prompt: PROMPT, tokens: String(n) });
        await page.goto(`${server.url}/?${q}`);
        await page.waitForFunction(() => ["done", "error"].includes(document.getElementById("status").dataset.state), null, {
          timeout: 60_000,
        });
        const got = await page.evaluate(() => ({
          status: document.getElementById("status").textContent,
          output: document.getElementById("output").textContent,
          tokens: document.getElementById("output").dataset.tokens,
          isolated: crossOriginIsolated,
        }));
        if (!/^\d+ tokens/.test(got.status)) failures.push(`status: ${got.status}`);
        if (got.output !== PROMPT + ref.text) failures.push(`page shows ${show(got.output)}, CLI ${show(PROMPT + ref.text)}`);
        if (got.tokens !== String(ref.new_tokens.length)) failures.push(`page reports ${got.tokens} tokens, CLI ${ref.new_tokens.length}`);
        if (!got.isolated) failures.push("the page is not cross-origin isolated");
        failures.push(...errors.map((e) => `page error: ${e}`));
        detail = `llama-tiny: "${got.status}"`;
      } finally {
        await context.close();
        await server.close();
      }
      return { failures, detail };
    },
  },
];

const t0 = performance.now();
let passed = 0;
let failed = 0;
try {
  for (const ex of EXAMPLES) {
    if (args.only && !ex.name.includes(args.only)) continue;
    const start = performance.now();
    let r;
    try {
      r = await Promise.race([
        ex.run(),
        new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out after ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS).unref()),
      ]);
    } catch (e) {
      r = { failures: [e.message] };
    }
    const s = ((performance.now() - start) / 1000).toFixed(1);
    if (r.failures.length === 0) {
      passed++;
      console.log(`ok    ${ex.name.padEnd(14)} ${s.padStart(5)} s  ${r.detail ?? ""}`);
    } else {
      failed++;
      console.log(`FAIL  ${ex.name.padEnd(14)} ${s.padStart(5)} s  ${r.failures.join("; ")}`);
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
console.log(`(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
console.log(`examples: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);

/** Poll a URL until it answers (workerd prints nothing when it is ready). */
async function waitForHttp(url, proc) {
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    if (proc.exited) throw new Error(`workerd exited (${proc.exited.code ?? proc.exited.signal}): ${tail(proc.err)}`);
    try {
      await fetch(url, { signal: AbortSignal.timeout(30_000) });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${url} did not answer within 30 s`);
}
