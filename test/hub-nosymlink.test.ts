// The hub cache where symlinks cannot be made (Windows without developer mode): like
// huggingface_hub's degraded mode, snapshots/<commit>/ then holds copies of the files.
import { describe, it, expect, afterAll, vi } from "vitest";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { lstatSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

vi.mock("node:fs/promises", async (original) => ({
  ...(await original<typeof import("node:fs/promises")>()),
  symlink: async () => {
    throw Object.assign(new Error("EPERM: operation not permitted, symlink"), { code: "EPERM" });
  },
}));
const { resolveModel } = await import("../src/formats/hub.js");

const FIX = join(import.meta.dirname, "fixtures", "opt-tiny");
const files: Record<string, Buffer> = {
  "config.json": readFileSync(join(FIX, "config.json")),
  "model.safetensors": readFileSync(join(FIX, "model.safetensors")),
};
const COMMIT = "c0ffee".padEnd(40, "0");
const server = createServer((req, res) => {
  const body = files[req.url!.split("/").pop()!];
  if (!body) return void res.writeHead(404, { "x-repo-commit": COMMIT }).end();
  const sha = createHash("sha256").update(body).digest("hex");
  res.writeHead(200, { "x-repo-commit": COMMIT, etag: `"${sha}"`, "content-length": String(body.length) }).end(body);
});
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
afterAll(() => {
  server.closeAllConnections();
  server.close();
});

describe("resolveModel without symlinks", () => {
  it("copies the blobs into the snapshot, and loads from it offline", async () => {
    vi.stubEnv("WASM_LM_CACHE", join(tmpdir(), "wasm-lm-no-old-cache"));
    const cacheDir = mkdtempSync(join(tmpdir(), "wasm-lm-hub-nosymlink-"));
    const dir = await resolveModel("test/opt-tiny", { endpoint, cacheDir });
    expect(dir).toBe(join(cacheDir, "models--test--opt-tiny", "snapshots", COMMIT));
    for (const [f, body] of Object.entries(files)) {
      expect(lstatSync(join(dir, f)).isFile(), f).toBe(true);
      expect(readFileSync(join(dir, f)).equals(body), f).toBe(true);
    }
    expect(await resolveModel("test/opt-tiny", { cacheDir, offline: true })).toBe(dir);
    vi.unstubAllEnvs();
  });
});
