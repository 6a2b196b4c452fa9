// Fetching the fixture files over HTTP, shared by the page and the worker (both bundled by esbuild).
export async function fetchFixture(base) {
  const get = async (path) => {
    const res = await fetch(new URL(path, base));
    if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status}`);
    return res;
  };
  const text = async (p) => (await get(p)).text();
  return {
    configJson: await text("/fixtures/opt-tiny/config.json"),
    referenceJson: await text("/fixtures/opt-tiny/reference.json"),
    safetensors: new Uint8Array(await (await get("/fixtures/opt-tiny/model.safetensors")).arrayBuffer()),
    vocabJson: await text("/fixtures/opt-tokenizer/vocab.json"),
    mergesTxt: await text("/fixtures/opt-tokenizer/merges.txt"),
    tokenizationJson: await text("/fixtures/opt-tokenizer/tokenization.json"),
  };
}
