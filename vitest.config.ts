import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Node 20 validates relaxed SIMD only behind this V8 flag: with it both wasm builds are tested.
    pool: "forks",
    execArgv: ["--experimental-wasm-relaxed-simd"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
