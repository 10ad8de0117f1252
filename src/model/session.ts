// A conversation's state: its own KV cache in the model's memory and a position.
import { CHUNK, type AttentionPath, type Decoder } from './decoder.js';
import { KvCache, type CacheFormat } from './kv-cache.js';
import { checkOptions, MlaError, showValue } from '../errors.js';
import { checkRows, modelFingerprint, writeSnapshot, type ReadSnapshot } from './snapshot.js';
import { memoryDigest } from '../host/digest.js';

export interface SessionOptions {
  /** Positions the cache holds (default: the model's max_position_embeddings, at most 4096). */
  contextLength?: number;
  /**
   * How the cache stores its rows (default 'f32'). MLA models may keep their latent rows as
   * 'bf16', or 'int8' / 'int4' with one scale per row (k^R stays bf16): 2×, ~3.5× and ~5.8× less
   * memory at DeepSeek-V2-Lite's dims, and attention reads them as they are. Models without MLA
   * take 'f32' only (BAD_INPUT otherwise).
   */
  cache?: CacheFormat;
}

export interface RunOptions {
  /**
   * MLA attention path, default 'absorbed'. Prefill runs in chunks of CHUNK tokens, and 'naive'
   * expands every cached latent row again for each chunk: at V2-Lite dims absorbed is 3% slower at
   * 128 tokens and faster past that (512: 0.91 vs 0.94 s, 2048: 5.4 vs 6.3 s on one core).
   */
  attention?: AttentionPath;
  /**
   * Where to write the logits: a Float32Array of at least vocab floats, not a view of the model's
   * memory. The call then returns a view of its first vocab floats instead of a new array, so a
   * decode loop that passes the same one allocates nothing per token (under Bun, allocating and
   * filling a fresh 32000-float array cost 0.2–0.35 ms; under Node 2–4 µs). Left as it was when
   * the call throws.
   */
  out?: Float32Array;
}

/** One session's token in Model.stepBatch. */
export interface BatchStep {
  session: Session;
  id: number;
}

const DEFAULT_CONTEXT = 4096;
// Every option's name, checked against the interfaces: a new option cannot be forgotten here.
const SESSION_OPTIONS = Object.keys({ contextLength: 1, cache: 1 } satisfies Record<keyof SessionOptions, 1>);
const RUN_OPTIONS = Object.keys({ attention: 1, out: 1 } satisfies Record<keyof RunOptions, 1>);

/** Throw BAD_INPUT / BAD_TOKEN unless `ids` is a non-empty list of integers in [0, vocab). */
export function checkIds(ids: ArrayLike<number>, vocab: number): void {
  if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') {
    throw new MlaError('BAD_INPUT', 'token ids must be an array of integers');
  }
  if (ids.length === 0) throw new MlaError('BAD_INPUT', 'token ids are empty');
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new MlaError('BAD_TOKEN', `token id ${showValue(id)} at index ${i} is not an integer in [0, ${vocab})`);
    }
  }
}

export class Session {
  private readonly decoder: Decoder;
  private readonly onDispose: (s: Session) => void;
  private cache: KvCache | null;
  private pos = 0;
  // The ids in the cache, for snapshots; null after skipTo() (rows taken as they were, ids unknown).
  private ids: number[] | null = [];
  // A generate()/chat() stream holds the session from its first token to its end: any other call
  // that runs or moves the cache then throws BUSY, as two streams would write into one cache.
  private holder: symbol | null = null;
  private asHolderNow = false;

  /** @internal Made by Model.createSession(). */
  constructor(decoder: Decoder, options: SessionOptions, onDispose: (s: Session) => void) {
    checkOptions(options, SESSION_OPTIONS, 'createSession() options');
    const max = decoder.config.maxPositions;
    const capacity = options.contextLength ?? Math.min(max, DEFAULT_CONTEXT);
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > max) {
      throw new MlaError('BAD_INPUT', `contextLength must be an integer in [1, ${max}] (max_position_embeddings), got ${showValue(capacity)}`);
    }
    this.decoder = decoder;
    this.onDispose = onDispose;
    this.cache = new KvCache(decoder.heap, decoder.config, capacity, options.cache ?? 'f32');
  }

  /** Tokens in the cache: the position the next token gets. */
  get position(): number { return this.pos; }

  /** Positions the cache can hold. */
  get capacity(): number { return this.live().capacity; }

  /** How the cache stores its rows: 'f32', 'bf16', 'int8' or 'int4'. */
  get cacheFormat(): CacheFormat { return this.live().format; }

  /** Bytes of KV cache holding the tokens so far (their rows in every layer, in the cache's format). */
  get kvCacheBytes(): number { return this.pos * this.kvCacheBytesPerToken; }

  /** Bytes of KV cache one token takes over all layers, in this session's format. */
  get kvCacheBytesPerToken(): number { return KvCache.bytes(this.decoder.config, 1, this.live().format); }

  get disposed(): boolean { return this.cache === null; }

  /** Whether a generate() or chat() stream is running on this session (other calls then throw BUSY). */
  get busy(): boolean { return this.holder !== null; }

  /** @internal Hold the session for a stream; BUSY when another holds it. Release with release(key). */
  hold(): symbol {
    this.live();
    this.notBusy();
    this.holder = Symbol('generation');
    return this.holder;
  }

  /** @internal Let go of the session (a no-op unless `key` holds it). */
  release(key: symbol): void {
    if (this.holder === key) this.holder = null;
  }

  /** @internal Run `f` (synchronous calls on this session) as the stream holding it. */
  asHolder<T>(key: symbol, f: () => T): T {
    if (this.holder !== key) this.notBusy();
    this.asHolderNow = true;
    try { return f(); } finally { this.asHolderNow = false; }
  }

  private notBusy(): void {
    if (this.holder !== null && !this.asHolderNow) {
      throw new MlaError('BUSY', 'this session is in use by a generate() or chat() stream that has not ended: ' +
        'wait for it to finish (or stop it) first, or use another session');
    }
  }

  /** Run a prompt (or its continuation); returns the logits of its last position. */
  prefill(ids: ArrayLike<number>, options: RunOptions = {}): Float32Array {
    checkOptions(options, RUN_OPTIONS, 'prefill() options');
    return this.run(ids, options.attention ?? 'absorbed', false, options.out);
  }

  /** Feed one token; returns the logits for the next position. */
  step(id: number, options: RunOptions = {}): Float32Array {
    checkOptions(options, RUN_OPTIONS, 'step() options');
    return this.run([id], options.attention ?? 'absorbed', false, options.out);
  }

  /** @internal Logits of every position of `ids`, row-major [T, vocab] (Model.forward). */
  runAll(ids: ArrayLike<number>, attention: AttentionPath): Float32Array {
    return this.run(ids, attention, true);
  }

  /** Forget every token; the cache is kept for reuse. */
  reset(): void {
    this.live();
    this.notBusy();
    this.pos = 0;
    this.ids = [];
  }

  /**
   * The session as bytes (its token ids and the cache rows in use, with the model's fingerprint):
   * model.restoreSession(bytes) makes a session that goes on exactly where this one is, in this
   * process or another, under any runtime.
   */
  snapshot(): Uint8Array {
    const cache = this.live();
    if (this.ids === null) throw new MlaError('BAD_INPUT', 'this session\'s token ids are unknown (its rows were taken with skipTo), so it cannot be snapshot');
    const d = this.decoder;
    return writeSnapshot(modelFingerprint(d.config, d.w, d.heap), cache, this.ids, memoryDigest(d.heap));
  }

  /** @internal The ids in the cache, in order (null when unknown, after skipTo). */
  get tokenIds(): readonly number[] | null {
    return this.ids;
  }

  /**
   * @internal Fill a fresh session from a read snapshot (TokenModel.restoreSession), checking its
   * checksum on the rows once in the cache: BAD_SNAPSHOT, the session left empty, if they do not match.
   */
  restore(read: ReadSnapshot): void {
    const cache = this.live();
    const { header, rows } = read;
    const perLayer = header.position * cache.rowBytes, all = cache.bytesView();
    for (let l = 0; l < cache.layers; l++) all.set(rows.subarray(l * perLayer, (l + 1) * perLayer), cache.at(l, 0) - cache.ptr);
    checkRows(read, cache, memoryDigest(this.decoder.heap));
    this.pos = header.position;
    this.ids = [...header.ids];
  }

  /**
   * Forget the tokens from `position` on, keeping those before it (their cache rows do not depend
   * on what came after): to rewind a conversation to a common prefix.
   */
  truncate(position: number): void {
    this.live();
    this.notBusy();
    if (!Number.isInteger(position) || position < 0 || position > this.pos) {
      throw new MlaError('BAD_INPUT', `truncate position must be an integer in [0, ${this.pos}], got ${showValue(position)}`);
    }
    this.pos = position;
    if (this.ids) this.ids.length = position;
  }

  /**
   * Give the cache's memory back. Using the session afterwards throws DISPOSED (a stream running
   * on it stops with DISPOSED at its next token).
   */
  dispose(): void {
    if (!this.cache) return;
    this.cache.release();
    this.cache = null;
    this.onDispose(this);
  }

  /** @internal The cache (for bench/ and scripts/: reading or filling its rows). */
  get kvCache(): KvCache {
    return this.live();
  }

  /**
   * @internal Take the first `position` cache rows as they are, as if their tokens had been run
   * (benchmarks fill the cache with random rows instead of a long prefill).
   */
  skipTo(position: number): void {
    const cache = this.live();
    if (!Number.isInteger(position) || position < 0 || position > cache.capacity) {
      throw new MlaError('BAD_INPUT', `position must be an integer in [0, ${cache.capacity}], got ${showValue(position)}`);
    }
    this.pos = position;
    this.ids = null;
  }

  /**
   * @internal Model.stepBatch, once it has checked that every session is this decoder's: validate
   * every step (live, not busy, not twice, id in range, room in the cache) before anything runs,
   * then one batched decode step per CHUNK sessions; no session moves unless all logits are finite.
   */
  static stepBatch(decoder: Decoder, steps: readonly BatchStep[]): Float32Array[] {
    const V = decoder.config.vocabSize;
    const seen = new Set<Session>();
    const items = steps.map(({ session: s, id }, i) => {
      if (seen.has(s)) throw new MlaError('BAD_INPUT', `stepBatch: the session at index ${i} is already in the batch (one token per session a step)`);
      seen.add(s);
      const cache = s.live();
      s.notBusy();
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        throw new MlaError('BAD_TOKEN', `stepBatch: token id ${showValue(id)} at index ${i} is not an integer in [0, ${V})`);
      }
      if (s.pos + 1 > cache.capacity) {
        throw new MlaError('CACHE_FULL', `stepBatch: the session at index ${i} is full (${cache.capacity} positions)`);
      }
      return { cache, pos: s.pos };
    });
    const out: Float32Array[] = [];
    for (let from = 0; from < steps.length; from += CHUNK) {
      const part = items.slice(from, from + CHUNK), B = part.length;
      decoder.setIds(steps.map((x) => x.id), from, B);
      const logits = decoder.runBatch(part, 'absorbed');
      const bad = decoder.ops.firstNonfinite(logits, B * V);
      if (bad >= 0) {
        throw new MlaError('NON_FINITE', `stepBatch: the logits of the session at index ${from + Math.floor(bad / V)} hold ` +
          `${decoder.heap.f32(logits + bad * 4, 1)[0]}: the weights or activations overflowed`);
      }
      const all = decoder.heap.f32(logits, B * V);
      for (let b = 0; b < B; b++) out.push(all.slice(b * V, (b + 1) * V));
    }
    // Rows past a session's position are not read until written again, so a throw above left every session as it was.
    steps.forEach(({ session: s, id }) => {
      s.pos++;
      s.ids?.push(id);
    });
    return out;
  }

  private live(): KvCache {
    if (!this.cache) throw new MlaError('DISPOSED', 'this session was disposed');
    return this.cache;
  }

  private run(ids: ArrayLike<number>, attention: AttentionPath, all: boolean, into?: Float32Array): Float32Array {
    const cache = this.live();
    this.notBusy();
    const d = this.decoder, V = d.config.vocabSize;
    if (attention !== 'naive' && attention !== 'absorbed') {
      throw new MlaError('BAD_INPUT', `attention must be 'naive' or 'absorbed', got ${showValue(attention)}`);
    }
    if (into !== undefined && (!(into instanceof Float32Array) || into.length < V || into.buffer === d.heap.memory.buffer)) {
      const got = !(into instanceof Float32Array) ? (typeof into === 'object' && into !== null ? Object.prototype.toString.call(into) : showValue(into))
        : into.length < V ? `${into.length} floats` : "a view of the model's memory";
      throw new MlaError('BAD_INPUT', `out must be a Float32Array of at least ${V} floats outside the model's memory, got ${got}`);
    }
    checkIds(ids, V);
    if (this.pos + ids.length > cache.capacity) {
      throw new MlaError('CACHE_FULL',
        `${ids.length} token(s) at position ${this.pos} do not fit a cache of ${cache.capacity} positions`);
    }
    const out = into ? into.subarray(0, V) : new Float32Array(all ? ids.length * V : V);
    let pos = this.pos;
    for (let from = 0; from < ids.length; from += CHUNK) {
      const T = Math.min(CHUNK, ids.length - from);
      const last = from + T === ids.length;
      d.setIds(ids, from, T);
      const logits = d.runChunk(cache, pos, T, attention, all);
      if (all || last) {
        const n = all ? T * V : V, at = all ? from * V : 0;
        const bad = d.ops.firstNonfinite(logits, n);
        if (bad >= 0) {
          throw new MlaError('NON_FINITE', `the logits hold ${d.heap.f32(logits + bad * 4, 1)[0]} (row ${Math.floor((at + bad) / V)}): the weights or activations overflowed`);
        }
        out.set(d.heap.f32(logits, n), at);
      }
      pos += T;
    }
    this.pos = pos;
    if (this.ids) for (let i = 0; i < ids.length; i++) this.ids.push(ids[i]);
    return out;
  }
}
