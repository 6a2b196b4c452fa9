// The only export surface of the wasm module.
export { relu } from "./kernels/elementwise";
