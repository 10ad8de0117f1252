export { loadModel, Model, type LoadOptions, type ForwardOptions } from './model.js';
export { Session, type SessionOptions, type RunOptions } from './session.js';
export type { ModelConfig, AttentionConfig, MlaAttention, GroupedAttention, YarnScaling, FfnConfig } from './config.js';
export type { AttentionPath } from './decoder.js';
export type { ModelSource, InMemoryModel, InMemoryTensor, FileMap } from './source.js';
export { MlaError, type MlaErrorCode } from './errors.js';
export { detectSimd, type KernelOptions, type SimdBuild } from './wasm.js';
