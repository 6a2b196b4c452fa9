// Node, Deno and Bun: the built dist/ as it is (no TypeScript loader, no bundler), imported by the
// package's own name so that package.json "exports" is what resolves it. The .wasm is located by
// wasm-lm itself (new URL("../build/…", import.meta.url), read with node:fs, which all three
// provide); the fixture files are read here and handed over as strings and bytes.
// Also loads each fixture directory through the Node loader (`wasm-lm/node`).
// Usage: <runtime> test/runtimes/entry-node.mjs <name> <threads: expect|error|skip>
import { readFileSync } from "node:fs";
import * as lib from "wasm-lm";
import * as kernels from "wasm-lm/kernels";
import { MODEL_FIXTURES, runChecks } from "./checks.mjs";

const [name = "node", threads = "expect"] = globalThis.Deno ? Deno.args : process.argv.slice(2);
const fixtureDir = (m) => new URL(`../fixtures/${m}/`, import.meta.url);
const tokDir = new URL("../fixtures/opt-tokenizer/", import.meta.url);
const text = (dir, f) => readFileSync(new URL(f, dir), "utf8");
const fixture = {
  models: MODEL_FIXTURES.map((m) => ({
    name: m,
    configJson: text(fixtureDir(m), "config.json"),
    referenceJson: text(fixtureDir(m), "reference.json"),
    safetensors: new Uint8Array(readFileSync(new URL("model.safetensors", fixtureDir(m)))),
  })),
  vocabJson: text(tokDir, "vocab.json"),
  mergesTxt: text(tokDir, "merges.txt"),
  tokenizationJson: text(tokDir, "tokenization.json"),
};
const log = (line) => console.log(`[${name}] ${line}`);

const result = await runChecks({ runtime: name, lib, kernels, fixture, threads, log, wasmSource: async () => ({}) });

// The Node loader (wasm-lm/node): each model directory by path, on one thread (LLaMA's and GPT-2's
// fixtures have no tokenizer files: token ids in and out).
for (const m of fixture.models) {
  try {
    const { loadModel } = await import("wasm-lm/node");
    const ref = JSON.parse(m.referenceJson);
    const { model } = await loadModel(fixtureDir(m.name).pathname, { threads: 1 });
    try {
      const g = await lib.generate(model, undefined, ref.input_ids, { maxNewTokens: 32, ignoreEos: true });
      const ok = JSON.stringify(g.new_tokens) === JSON.stringify(ref.generation.new_tokens);
      log(`${ok ? "ok  " : "FAIL"} wasm-lm/node loadModel(${m.name}): ${ok ? "32/32 tokens" : `tokens differ: [${g.new_tokens}]`}`);
      if (!ok) {
        result.ok = false;
        result.failures.push(`wasm-lm/node loadModel(${m.name})`);
      }
    } finally {
      model.dispose();
    }
  } catch (e) {
    log(`FAIL wasm-lm/node loadModel(${m.name}) threw ${e?.message ?? e}`);
    result.ok = false;
    result.failures.push(`wasm-lm/node loadModel(${m.name})`);
  }
}

console.log(`RESULT ${JSON.stringify({ runtime: name, ...result })}`);
// Exit explicitly: a worker pool or timer left behind must not keep the runtime alive.
(globalThis.Deno ? Deno.exit : process.exit)(result.ok ? 0 : 1);
