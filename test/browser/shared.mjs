// Fetching the fixture files over HTTP, shared by the page and the worker (both bundled by esbuild).
import { MODEL_FIXTURES } from "../runtimes/checks.mjs";

export async function fetchFixture(base) {
  const get = async (path) => {
    const res = await fetch(new URL(path, base));
    if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status}`);
    return res;
  };
  const text = async (p) => (await get(p)).text();
  const model = async (name) => ({
    name,
    configJson: await text(`/fixtures/${name}/config.json`),
    referenceJson: await text(`/fixtures/${name}/reference.json`),
    safetensors: new Uint8Array(await (await get(`/fixtures/${name}/model.safetensors`)).arrayBuffer()),
  });
  return {
    models: await Promise.all(MODEL_FIXTURES.map(model)),
    vocabJson: await text("/fixtures/opt-tokenizer/vocab.json"),
    mergesTxt: await text("/fixtures/opt-tokenizer/merges.txt"),
    tokenizationJson: await text("/fixtures/opt-tokenizer/tokenization.json"),
  };
}
