// as-pect runs the AssemblyScript kernel tests (assembly/__tests__/*.spec.ts) inside wasm.
// Two passes from package.json's test:kernels, one per build's feature set:
//   asp --as-config as-pect.asconfig.json           SIMD128            (madd = mul + add)
//   asp --as-config as-pect.relaxed.asconfig.json   SIMD128 + relaxed  (madd = relaxed_madd)
// Node 20 validates relaxed SIMD only behind a V8 flag; setting it here, before any module is
// compiled, is allowed (NODE_OPTIONS is not) and harmless for the SIMD128 pass.
import v8 from "node:v8";

v8.setFlagsFromString("--experimental-wasm-relaxed-simd");

export default {
  entries: ["assembly/__tests__/**/*.spec.ts"],
  include: ["assembly/__tests__/**/*.include.ts"],
  disclude: [/node_modules/],
  async instantiate(memory, createImports, instantiate, binary) {
    return instantiate(binary, createImports({ env: { memory } }));
  },
  outputBinary: false,
};
