// A model over token ids: config, weights in WebAssembly memory, forward() and sessions.
// Text generation and chat are added on top of it in generate/model.ts.
import { mhaCacheNumbers, parseConfig, type ModelConfig } from '../formats/config.js';
import { Decoder, type AttentionPath } from './decoder.js';
import { checkCacheFormat, KvCache, type CacheFormat } from './kv-cache.js';
import type { Ops } from './ops.js';
import type { ScratchKernels } from './op-scratch.js';
import { checkOptions, MlaError, showValue } from '../errors.js';
import { checkIds, Session, type BatchStep, type SessionOptions } from './session.js';
import { openSource, type ModelSource } from '../formats/source.js';
import type { HubOptions } from '../formats/hub.js';
import { defaultThreads } from '../host/threads.js';
import { type ThreadPool } from '../host/pool.js';
import { givenKernels, loadKernels } from '../host/load.js';
import { type KernelOptions, type SimdBuild } from '../host/kernels.js';
import { checkMemory, memoryNeed, WASM_MEMORY_LIMIT, type MemoryNeed } from './memory.js';
import { modelFingerprint, readSnapshot } from './snapshot.js';
import { checkTensors, checkWeightsOption, placeWeights, recordedPlan, weightBytes, weightPlan, type WeightPlan, type WeightsOption } from './weights.js';
import { loadQuantizer } from './op-scratch.js';
import { maxLinearCols, scratchBytes, scratchSizes } from './decoder.js';
import { tokenizerFilesOf } from '../formats/model-files.js';
import { loadTokenizerFiles, type GenerationConfig, type Tokenizer } from '../formats/tokenizer.js';

export interface LoadOptions extends KernelOptions, HubOptions {
  /**
   * How weights are kept in memory: 'auto' (default) as the file stores them (F32, F16, BF16,
   * Q8_0, Q4_0, Q4_K, Q5_K, Q6_K; Q3_K, IQ4_XS, IQ4_NL, Q5_0 repacked exactly into q6k / q8), or all made 'f32', 'bf16', 'int8' or 'int4' at load (see formatChooser for what
   * stays wider).
   */
  weights?: WeightsOption;
  /** Called as weights are placed: bytes of WebAssembly memory filled so far, out of the total. */
  onProgress?: (done: number, total: number) => void;
}

// Every option's name, checked against the interfaces: a new option cannot be forgotten here.
const LOAD_OPTIONS = Object.keys({ simd: 1, threads: 1, wasmModule: 1, wasmBytes: 1, onProgress: 1, weights: 1,
  file: 1, revision: 1, hubUrl: 1, cacheDir: 1, onDownload: 1 } satisfies Record<keyof LoadOptions, 1>);
const FORWARD_OPTIONS = Object.keys({ attention: 1, cache: 1 } satisfies Record<keyof ForwardOptions, 1>);
const MEMORY_OPTIONS = Object.keys({ cache: 1, contextLength: 1 } satisfies Record<keyof MemoryForOptions, 1>);
const BATCH_STEP_KEYS = Object.keys({ session: 1, id: 1 } satisfies Record<keyof BatchStep, 1>);

export interface ForwardOptions {
  /** MLA attention path for the whole sequence (default 'absorbed', as Session.prefill). */
  attention?: AttentionPath;
  /** The cache format of the session it runs in (default 'f32'; see SessionOptions.cache). */
  cache?: CacheFormat;
}

/** memoryFor's options: the one session's cache it counts. */
export interface MemoryForOptions {
  cache?: CacheFormat;
  contextLength?: number;
}

/** What loading a model yields, before it is wrapped in a TokenModel (or a subclass). */
export interface ModelParts {
  config: ModelConfig;
  decoder: Decoder;
  simd: SimdBuild;
  pool: ThreadPool | null;
  tokenizer: Tokenizer | null;
  generationConfig: GenerationConfig | null;
  /** The `weights` option the model was loaded with, and the kernels' scratch sizing (memoryFor). */
  weights: WeightsOption;
  /** Each matrix's format as placed (memoryFor('auto') replays it). */
  plan: WeightPlan;
  scratchKernels: ScratchKernels;
}

export class TokenModel {
  /** The parsed configuration (the numbers docs/mla.md §1 names). */
  readonly config: ModelConfig;
  /** Which kernel build runs: 'relaxed' (fused multiply-add) or 'simd'. */
  readonly simd: SimdBuild;
  /** Bytes of weights in WebAssembly memory. */
  readonly weightBytes: number;
  /** How the weights are kept: the `weights` option it was loaded with ('auto': as the file stores them). */
  readonly weightFormat: WeightsOption;
  /** The tokenizer from tokenizer.json (+ tokenizer_config.json), or null when the folder has none. */
  readonly tokenizer: Tokenizer | null;
  /** generation_config.json: the defaults generate() and chat() use, or null. */
  readonly generationConfig: GenerationConfig | null;
  private readonly decoder: Decoder;
  private readonly scratchKernels: ScratchKernels;
  private readonly plan: WeightPlan;
  private readonly pool: ThreadPool | null;
  private readonly sessions = new Set<Session>();
  private isDisposed = false;

  /** @internal Use loadModel(). */
  constructor(parts: ModelParts) {
    this.config = parts.config;
    this.decoder = parts.decoder;
    this.simd = parts.simd;
    this.weightBytes = parts.decoder.w.bytes;
    this.weightFormat = parts.weights;
    this.scratchKernels = parts.scratchKernels;
    this.plan = parts.plan;
    this.tokenizer = parts.tokenizer;
    this.generationConfig = parts.generationConfig;
    this.pool = parts.pool;
  }

  /**
   * Threads the kernels run on, this one included: 1 where threads are off or unavailable, and
   * after a worker thread died (the call running then threw WORKER_FAILED).
   */
  get threads(): number {
    return this.pool && !this.pool.failed ? this.pool.threads : 1;
  }

  /** Bytes of KV cache one token takes over all layers, in an f32 cache (the default; a session's own: its kvCacheBytesPerToken). */
  get kvCacheBytesPerToken(): number {
    return KvCache.bytes(this.config, 1);
  }

  /** Bytes of KV cache one token takes over all layers in `format` (BAD_INPUT for a format this model cannot keep). */
  cacheBytesPerToken(format: CacheFormat): number {
    checkCacheFormat(this.config, format);
    return KvCache.bytes(this.config, 1, format);
  }

  /** What multi-head attention with the same head dims would cache per token, in bytes. */
  get mhaCacheBytesPerToken(): number {
    return KvCache.bytesFor(1, this.config.layers, mhaCacheNumbers(this.config.attention));
  }

  /**
   * The WebAssembly memory this model's config would need with all weights in another format
   * (f32, bf16, int8, int4; 'auto': each matrix as this model holds it; the threads as now) and one session's cache of `contextLength`
   * positions (default a chunk's) in `cache` format (default f32): does it fit in 4 GiB?
   */
  memoryFor(weights: WeightsOption, options: MemoryForOptions = {}): MemoryNeed & { fits: boolean } {
    checkOptions(options, MEMORY_OPTIONS, 'memoryFor() options');
    const plan = checkWeightsOption(weights) === 'auto' ? this.plan : weightPlan(weights);
    const cache = options.cache ?? 'f32';
    checkCacheFormat(this.config, cache);
    const positions = options.contextLength;
    if (positions !== undefined && !(Number.isInteger(positions) && positions > 0)) {
      throw new MlaError('BAD_INPUT', `contextLength must be a positive integer, got ${showValue(positions)}`);
    }
    const need = memoryNeed(this.config, this.scratchKernels, { threads: this.threads, plan, cache, cachePositions: positions });
    return { ...need, fits: need.total <= WASM_MEMORY_LIMIT };
  }

  /** Bytes of WebAssembly memory in use: weights, scratch and every live session's cache. */
  get memoryBytes(): number {
    return this.decoder.heap.usedBytes;
  }

  createSession(options: SessionOptions = {}): Session {
    this.alive();
    const s = new Session(this.decoder, options, (x) => this.sessions.delete(x));
    this.sessions.add(s);
    return s;
  }

  /**
   * A session from session.snapshot()'s bytes, taken with this model (in any process or runtime):
   * its next logits are those the snapshot's session would give. `contextLength` defaults to the
   * snapshot's session's capacity, and the cache format is the snapshot's (`cache`, if given, must
   * name it). A snapshot of another model or cache format, of another version, or truncated or
   * altered is BAD_SNAPSHOT, and nothing is made.
   */
  restoreSession(bytes: Uint8Array, options: SessionOptions = {}): Session {
    this.alive();
    checkOptions(options, ['contextLength', 'cache'], 'restoreSession() options');
    const d = this.decoder;
    const read = readSnapshot(bytes, this.config, modelFingerprint(d.config, d.w, d.heap), options.cache);
    const { header } = read;
    const contextLength = options.contextLength ?? header.capacity;
    if (!Number.isInteger(contextLength) || contextLength < header.position) {
      throw new MlaError('BAD_INPUT', `contextLength must be an integer ≥ the snapshot's ${header.position} positions, got ${showValue(contextLength)}`);
    }
    const s = this.createSession({ contextLength, cache: header.cacheFormat });
    try {
      s.restore(read);
    } catch (e) {
      s.dispose();
      throw e;
    }
    return s;
  }

  /**
   * One decode step for several sessions of this model, each at its own position: feed steps[i].id
   * to steps[i].session and return its next logits as out[i], as session.step would to float
   * rounding. The linear layers run once over all the tokens, so the weights are read once a step
   * instead of once a session. Everything is checked first (a session of another model, twice in
   * the batch, busy, full, a bad id: a typed error), and on any error no session has moved.
   */
  stepBatch(steps: readonly BatchStep[]): Float32Array[] {
    this.alive();
    if (!Array.isArray(steps) || steps.length === 0) throw new MlaError('BAD_INPUT', 'stepBatch takes a non-empty array of { session, id }');
    steps.forEach((x, i) => {
      const s = (x as BatchStep | null)?.session;
      if (typeof x !== 'object' || x === null || !(s instanceof Session)) {
        throw new MlaError('BAD_INPUT', `stepBatch: entry ${i} is not a { session, id } with a session made by createSession()`);
      }
      checkOptions(x, BATCH_STEP_KEYS, `stepBatch() entry ${i}`);
      if (!this.sessions.has(s)) {
        if (s.disposed) throw new MlaError('DISPOSED', `stepBatch: the session at index ${i} was disposed`);
        throw new MlaError('BAD_INPUT', `stepBatch: the session at index ${i} belongs to another model`);
      }
    });
    return Session.stepBatch(this.decoder, steps);
  }

  /** Logits for every position of `ids`, row-major [T, vocab]. */
  forward(ids: ArrayLike<number>, options: ForwardOptions = {}): Float32Array {
    this.alive();
    checkOptions(options, FORWARD_OPTIONS, 'forward() options');
    const length = ids?.length;
    if (typeof length !== 'number' || length < 1) throw new MlaError('BAD_INPUT', 'token ids must be a non-empty array');
    if (length > this.config.maxPositions) {
      throw new MlaError('CACHE_FULL', `${length} tokens exceed max_position_embeddings (${this.config.maxPositions})`);
    }
    checkIds(ids, this.config.vocabSize); // before the session's cache is allocated: bad ids touch no memory
    const s = this.createSession({ contextLength: length, cache: options.cache });
    try {
      return s.runAll(ids, options.attention ?? 'absorbed');
    } finally {
      s.dispose();
    }
  }

  /** @internal The door to the kernels (for bench/ and scripts/: its profiling observer, thread settings). */
  get ops(): Ops {
    return this.decoder.ops;
  }

  /**
   * @internal Call `tap` with each layer's attention input ([rows, hidden], a view valid during
   * the call) in every forward pass from now on; null stops it (MHA/GQA → MLA calibration).
   */
  tapAttentionInputs(tap: ((layer: number, x: Float32Array) => void) | null): void {
    this.decoder.attentionInputTap = tap;
  }

  /** @internal Whether `s` is a live session of this model. */
  ownsSession(s: Session): boolean {
    return this.sessions.has(s);
  }

  /** Free every session and stop the worker threads. The model cannot be used afterwards. */
  dispose(): void {
    for (const s of [...this.sessions]) s.dispose();
    this.pool?.dispose();
    this.isDisposed = true;
  }

  protected alive(): void {
    if (this.isDisposed) throw new MlaError('DISPOSED', 'this model was disposed');
  }
}

/**
 * Read a model's files, check them, start the kernels and place the weights (loadModel wraps the
 * result). Source: a folder (path or URL) holding config.json and model.safetensors (or shards
 * listed in model.safetensors.index.json), a map of file name → bytes, or an in-memory
 * { config, tensors }. Without a source, the built-in default model (fortune-mla).
 */
export async function openModel(source?: ModelSource, options: LoadOptions = {}): Promise<ModelParts> {
  checkOptions(options, LOAD_OPTIONS, 'loadModel() options');
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new MlaError('BAD_INPUT', 'onProgress must be a function');
  }
  const format = checkWeightsOption(options.weights ?? 'auto');
  const given = await givenKernels(options); // before the model is read: a bad kernel option fails fast
  const { file, revision, hubUrl, cacheDir, onDownload, ...rest } = options;
  const src = await openSource(source, { file, revision, hubUrl, cacheDir, onDownload });
  const config = parseConfig(src.config);
  const extras = loadTokenizerFiles(tokenizerFilesOf(src, source));
  // Recorded: memoryFor('auto') replays the choices once the source (and its file types) is released.
  const recorded = recordedPlan(weightPlan(format, src.tensors));
  const plan = recorded.plan;
  const threads = options.threads ?? await defaultThreads(weightBytes(config, plan));
  const { weights: _, ...kernelOptions } = rest;
  const { kernels, heap, build, pool } = await loadKernels({ ...kernelOptions, threads }, given);
  try {
    // Before anything big is allocated: does it fit (arithmetic on the config alone, so an absurd
    // config is refused before its tensor list is built), and does the checkpoint match the config?
    const T = pool?.threads ?? 1;
    checkMemory(config, kernels, T, { option: format, plan });
    checkTensors(config, src.tensors);
    const quantizer = loadQuantizer(kernels, maxLinearCols(config), scratchBytes(scratchSizes(config, kernels, T)));
    const weights = placeWeights(config, src.tensors, heap, options.onProgress, plan, quantizer);
    return { config, decoder: new Decoder(kernels, heap, config, weights, pool), simd: build, pool, ...extras, weights: format,
      plan: recorded.settle(), scratchKernels: kernels };
  } catch (e) {
    pool?.dispose();
    throw e;
  }
}
