export { MlaError, type MlaErrorCode } from './errors.js';
export { detectSimd, type KernelOptions, type SimdBuild } from './wasm.js';
