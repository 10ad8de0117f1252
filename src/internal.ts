// The way into the package's insides for bench/ and scripts/ (not in package.json's exports, so
// not part of the public API): the kernels, the one door to them (Ops, with its profiling
// observer), the decoder and its KV cache, weight placement and the config's numbers. bench/ and
// scripts/ import src/ through this file or index.ts only (test/layers.test.ts checks it).
export * from './index.js';
export { loadKernels, type LoadedKernels } from './host/load.js';
export { chooseBuild, type Kernels } from './host/kernels.js';
export { threadsAvailable } from './host/threads.js';
export { Ops } from './model/ops.js';
export { INIT, BLOCK, FINISH, type OpEvent, type LinearCall, type MatmulCall, type AttentionCall, type Rows, type BatchRows } from './model/op-calls.js';
export { loadQuantizer } from './model/op-scratch.js';
export { Decoder, CHUNK, packBytes, maxLinearCols, scratchBytes, scratchSizes } from './model/decoder.js';
export { KvCache } from './model/kv-cache.js';
export { expectedTensors, formatChooser, matrixBytes, placeWeights, panelWidth, weightBytes, weightPlan, type Matrix, type MatrixFormat,
  type WeightPlan, type Weights,
  type WeightsOption } from './model/weights.js';
export { memoryNeed, WASM_MEMORY_LIMIT } from './model/memory.js';
export { ropeFrequencies, softmaxScale } from './model/rope.js';
export { parseConfig } from './formats/config.js';
export type { TensorSource } from './formats/tensor-source.js';
export { listen, type Listening } from './serve/node.js';
export { writeConvertedFolder } from './convert/write-folder.js';
export { planGguf, ggufChunks } from './formats/gguf-write.js';
export { JsonConstraint, tokenTrie } from './generate/json-mode.js';
