// How the end-to-end bench's runner talks to its sides. Each side runs in a child process of its
// own (`--e2e-worker <json>`, this runtime): ours (loadModel, prefill, steps) and each peer
// (onnxruntime, Node only). All stay loaded, and the runner asks them in turn for a few timed steps
// at a time, round after round, so every side is sampled across the same minutes: this machine is
// shared, and a neighbour's phase (seen as 1-thread steps 15% slower for a block, the read probes
// beside them unchanged) would otherwise fall on one side only.
//
// The child prints one JSON line when ready (E2eReady), then for each line `n` on its stdin times
// n runs and prints one line (E2eBlock); an empty line or the end of stdin ends it.
import type { CacheFormat, ModelConfig, SimdBuild, WeightsOption } from '../../src/internal.js';
import type { StepGraph } from './onnx-step.js';

/** The context every side steps at: ours prefills this many tokens, the peers get this many cache rows. */
export const CONTEXT = 512;
/** Untimed runs before each block of timed ones, ms. */
export const WARM_MS = 300;
/** The token of the step that is checked and timed. */
export const STEP_ID = 17;

/** The prompt ours prefills (deterministic ids). */
export function e2ePrompt(c: ModelConfig): number[] {
  let s = 7;
  return Array.from({ length: CONTEXT }, () => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s % c.vocabSize; });
}

export interface E2eWorkerSpec {
  peer: 'mla-wasm' | 'onnxruntime-web' | 'onnxruntime-node'; threads: number; dir: string; build: SimdBuild;
  /** mla-wasm only: the weights' format in memory (default f32) and the latent cache's (default f32). */
  weights?: Exclude<WeightsOption, 'auto'>;
  cache?: CacheFormat;
  /** mla-wasm only: also write inputsFile(weights) .bin/.json (the cache and RoPE inputs of the ONNX graphs of its weights). */
  writeInputs?: boolean;
  /** onnxruntime only: the graph it runs (default f32). */
  graph?: StepGraph;
}

/** The ONNX graphs' inputs as ours with these weights made them (its cache after the prefill): `${name}.bin`, `${name}.json`. */
export const inputsFile = (weights: string): string => (weights === 'f32' ? 'inputs' : `inputs-${weights}`);
export interface E2eReady {
  peer: string; version: string; threads: number; ok: boolean; note?: string;
  loadMs?: number; logits?: string /* base64 f32 */;
  /** mla-wasm only: the prefill of CONTEXT tokens, ms. */
  prefillMs?: number;
}
/** Each timed run of a block, in order, and the in-process read probe (GB/s) taken before it. */
export interface E2eBlock { times: number[]; probeGBs: number[] }

/** One side, loaded and checked: `warm` runs untimed, `run` is what is timed. */
export interface Side { ready: E2eReady; warm?: () => Promise<void>; run?: () => unknown; dispose?: () => Promise<void> | void }

/** Logits as they travel in E2eReady: base64 of the f32 bytes. */
export const encodeLogits = (v: Float32Array): string => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
export const decodeLogits = (b64: string): Float32Array => new Float32Array(Uint8Array.from(Buffer.from(b64, 'base64')).buffer);
