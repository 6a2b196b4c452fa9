// A module Web Worker on the test page: the checks with the .wasm fetched by the caller and passed
// as { bytes } (the README's browser example). Here Atomics.wait is allowed, so with a cross-origin
// isolated page wasm-lm's thread pool (nested Web Workers from a Blob URL) runs threads: 2.
import * as lib from "wasm-lm";
import * as kernels from "wasm-lm/kernels";
import { runChecks } from "../runtimes/checks.mjs";
import { fetchFixture } from "./shared.mjs";

self.onmessage = async (e) => {
  const { threads, tag } = e.data;
  const log = (line) => self.postMessage({ log: `[${tag}] ${line}` });
  try {
    const fixture = await fetchFixture(self.location.href);
    const wasmSource = async (build, shared) => {
      const res = await fetch(new URL(`../build/wasm-lm.${build}${shared ? "-mt" : ""}.wasm`, import.meta.url));
      return { bytes: new Uint8Array(await res.arrayBuffer()) };
    };
    const result = await runChecks({ runtime: tag, lib, kernels, fixture, threads, log, wasmSource });
    self.postMessage({ result });
  } catch (err) {
    self.postMessage({ result: { ok: false, failures: [`threw ${err?.stack ?? err}`], figures: {} } });
  }
};
