// The public model: config, weights in WebAssembly memory, forward() and sessions.
import { cacheNumbersPerTokenPerLayer, mhaCacheNumbers, parseConfig, type ModelConfig } from './config.js';
import { Decoder, type AttentionPath } from './decoder.js';
import { MlaError } from './errors.js';
import { Session, type SessionOptions } from './session.js';
import { openSource, type ModelSource } from './source.js';
import { defaultThreads, type ThreadPool } from './threads.js';
import { loadKernels, type KernelOptions, type SimdBuild } from './wasm.js';
import { checkMemory } from './memory.js';
import { checkTensors, placeWeights, weightBytes } from './weights.js';
// Tokenizer, generation defaults and streaming generation (src/tokenizer.ts, src/generate.ts).
import { chat, generate, type ChatOptions, type GenerateOptions, type Generation } from './generate.js';
import { tokenizerFilesOf } from './model-files.js';
import { loadTokenizerFiles, type ChatMessage, type GenerationConfig, type Tokenizer } from './tokenizer.js';

export interface LoadOptions extends KernelOptions {
  /** Called as weights are placed: bytes of WebAssembly memory filled so far, out of the total. */
  onProgress?: (done: number, total: number) => void;
}

export interface ForwardOptions {
  /** MLA attention path for the whole sequence (default 'absorbed', as Session.prefill). */
  attention?: AttentionPath;
}

export class Model {
  /** The parsed configuration (the numbers mla.md names). */
  readonly config: ModelConfig;
  /** Which kernel build runs: 'relaxed' (fused multiply-add) or 'simd'. */
  readonly simd: SimdBuild;
  /** Bytes of weights in WebAssembly memory. */
  readonly weightBytes: number;
  /** The tokenizer from tokenizer.json (+ tokenizer_config.json), or null when the folder has none. */
  readonly tokenizer: Tokenizer | null;
  /** generation_config.json: the defaults generate() and chat() use, or null. */
  readonly generationConfig: GenerationConfig | null;
  private readonly decoder: Decoder;
  private readonly pool: ThreadPool | null;
  private readonly sessions = new Set<Session>();
  private isDisposed = false;

  /** @internal Use loadModel(). */
  constructor(config: ModelConfig, decoder: Decoder, simd: SimdBuild, pool: ThreadPool | null,
    extras: { tokenizer?: Tokenizer | null; generationConfig?: GenerationConfig | null } = {}) {
    this.config = config;
    this.decoder = decoder;
    this.simd = simd;
    this.weightBytes = decoder.w.bytes;
    this.tokenizer = extras.tokenizer ?? null;
    this.generationConfig = extras.generationConfig ?? null;
    this.pool = pool;
  }

  /**
   * Threads the kernels run on, this one included: 1 where threads are off or unavailable, and
   * after a worker thread died (the call running then threw WORKER_FAILED).
   */
  get threads(): number {
    return this.pool && !this.pool.failed ? this.pool.threads : 1;
  }

  /** Bytes of KV cache one token takes over all layers. */
  get kvCacheBytesPerToken(): number {
    return this.config.layers * cacheNumbersPerTokenPerLayer(this.config.attention) * 4;
  }

  /** What multi-head attention with the same head dims would cache per token, in bytes. */
  get mhaCacheBytesPerToken(): number {
    return this.config.layers * mhaCacheNumbers(this.config.attention) * 4;
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

  /** Logits for every position of `ids`, row-major [T, vocab]. */
  forward(ids: ArrayLike<number>, options: ForwardOptions = {}): Float32Array {
    this.alive();
    const length = ids?.length;
    if (typeof length !== 'number' || length < 1) throw new MlaError('BAD_INPUT', 'token ids must be a non-empty array');
    if (length > this.config.maxPositions) {
      throw new MlaError('CACHE_FULL', `${length} tokens exceed max_position_embeddings (${this.config.maxPositions})`);
    }
    const s = this.createSession({ contextLength: length });
    try {
      return s.runAll(ids, options.attention ?? 'absorbed');
    } finally {
      s.dispose();
    }
  }

  /**
   * Stream a continuation of `prompt` (text through the tokenizer, or token ids) as { id, text }
   * pieces. Options default to generation_config.json; see GenerateOptions.
   */
  generate(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): Generation {
    this.alive();
    return generate(this, prompt, options);
  }

  /** Stream the assistant's answer to a conversation, rendered by the tokenizer's chat template. */
  chat(messages: ChatMessage[], options: ChatOptions = {}): Generation {
    this.alive();
    return chat(this, messages, options);
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

  private alive(): void {
    if (this.isDisposed) throw new MlaError('DISPOSED', 'this model was disposed');
  }
}

/**
 * Load a model: a folder (path or URL) holding config.json and model.safetensors (or shards listed in
 * model.safetensors.index.json), a map of file name → bytes, or an in-memory { config, tensors }.
 * Without a source, the built-in default model (fortune-mla).
 */
export async function loadModel(source?: ModelSource, options: LoadOptions = {}): Promise<Model> {
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new MlaError('BAD_INPUT', 'onProgress must be a function');
  }
  const src = await openSource(source);
  const config = parseConfig(src.config);
  const extras = loadTokenizerFiles(tokenizerFilesOf(src, source));
  const threads = options.threads ?? await defaultThreads(weightBytes(config));
  const { kernels, heap, build, pool } = await loadKernels({ ...options, threads });
  try {
    // Before anything big is allocated: does it fit (arithmetic on the config alone, so an absurd
    // config is refused before its tensor list is built), and does the checkpoint match the config?
    checkMemory(config, kernels, pool?.threads ?? 1);
    checkTensors(config, src.tensors);
    const weights = placeWeights(config, src.tensors, heap, options.onProgress);
    return new Model(config, new Decoder(kernels, heap, config, weights, pool), build, pool, extras);
  } catch (e) {
    pool?.dispose();
    throw e;
  }
}
