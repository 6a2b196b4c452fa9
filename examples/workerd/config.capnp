# workerd config: `node build.mjs && MODEL_URL=http://127.0.0.1:8000/opt-125m-int8/ npx workerd serve config.capnp`
# then the OpenAI API is on http://127.0.0.1:8787/v1 (`--socket-addr http=127.0.0.1:PORT` to move it).
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    # The model's storage may be on this machine or a private network (the default allows public addresses only).
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [ (name = "http", address = "127.0.0.1:8787", http = (), service = "main") ],
);

const worker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "out/worker.js"),
    (name = "wasm-lm/build/wasm-lm.simd.wasm", wasm = embed "out/wasm-lm/build/wasm-lm.simd.wasm"),
  ],
  compatibilityDate = "2025-09-01",
  bindings = [
    (name = "MODEL_URL", fromEnvironment = "MODEL_URL"),   # a directory URL ending in /
    (name = "MODEL_ID", fromEnvironment = "MODEL_ID"),     # the id requests name (default MODEL_URL)
    (name = "API_KEY", fromEnvironment = "API_KEY"),       # optional: require Authorization: Bearer
  ],
);
