// Node, Deno and Bun: the built dist/ as it is (no TypeScript loader, no bundler), imported by the
// package's own name so that package.json "exports" is what resolves it. The .wasm is located by
// wasm-lm itself (new URL("../build/…", import.meta.url), read with node:fs, which all three
// provide); the fixture files are read here and handed over as strings and bytes.
// Also loads the fixture directory through the Node loader (`wasm-lm/node`).
// Usage: <runtime> test/runtimes/entry-node.mjs <name> <threads: expect|error|skip>
import { readFileSync } from "node:fs";
import * as lib from "wasm-lm";
import { runChecks } from "./checks.mjs";

const [name = "node", threads = "expect"] = (globalThis.Deno ? Deno.args : process.argv.slice(2));
const fixtureDir = new URL("../fixtures/opt-tiny/", import.meta.url);
const tokDir = new URL("../fixtures/opt-tokenizer/", import.meta.url);
const text = (dir, f) => readFileSync(new URL(f, dir), "utf8");
const fixture = {
  configJson: text(fixtureDir, "config.json"),
  referenceJson: text(fixtureDir, "reference.json"),
  safetensors: new Uint8Array(readFileSync(new URL("model.safetensors", fixtureDir))),
  vocabJson: text(tokDir, "vocab.json"),
  mergesTxt: text(tokDir, "merges.txt"),
  tokenizationJson: text(tokDir, "tokenization.json"),
};
const log = (line) => console.log(`[${name}] ${line}`);

const result = await runChecks({ runtime: name, lib, fixture, threads, log, wasmSource: async () => ({}) });

// The Node loader (wasm-lm/node): a model directory by path, on one thread.
try {
  const { loadModel } = await import("wasm-lm/node");
  const ref = JSON.parse(fixture.referenceJson);
  const { model } = await loadModel(new URL(".", fixtureDir).pathname, { threads: 1 });
  const g = await lib.generate(model, undefined, ref.input_ids, { maxNewTokens: 32, ignoreEos: true });
  const ok = JSON.stringify(g.new_tokens) === JSON.stringify(ref.generation.new_tokens);
  log(`${ok ? "ok  " : "FAIL"} wasm-lm/node loadModel(dir): ${ok ? "32/32 tokens" : "tokens differ"}`);
  if (!ok) { result.ok = false; result.failures.push("wasm-lm/node loadModel"); }
} catch (e) {
  log(`FAIL wasm-lm/node loadModel(dir) threw ${e?.message ?? e}`);
  result.ok = false;
  result.failures.push("wasm-lm/node loadModel");
}

console.log(`RESULT ${JSON.stringify({ runtime: name, ...result })}`);
// Exit explicitly: a worker pool or timer left behind must not keep the runtime alive.
(globalThis.Deno ? Deno.exit : process.exit)(result.ok ? 0 : 1);
