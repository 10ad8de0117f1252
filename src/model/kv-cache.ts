// A session's KV cache in the model's memory: for each layer, `capacity` rows, one per position,
// layer after layer. The one place that knows its layout and its size.
//
// Formats: 'f32' rows are the cached numbers as f32 (MLA's [c_kv ; k^R], else k and v of every KV
// head). MLA models may also keep their latent rows narrow (assembly/latent.ts has the byte
// layout): 'bf16', or 'int8' / 'int4' c_kv with one f32 scale per row; k^R then stays bf16, since
// it carries position. Attention reads the narrow rows as they are.
import type { AttentionConfig, ModelConfig } from '../formats/config.js';
import type { Heap } from '../host/heap.js';
import { MlaError, showValue } from '../errors.js';

const F = 4; // bytes per f32

export type CacheFormat = 'f32' | 'bf16' | 'int8' | 'int4';
export const CACHE_FORMATS: readonly CacheFormat[] = ['f32', 'bf16', 'int8', 'int4'];

const ceil = (n: number, m: number) => Math.ceil(n / m) * m;

/**
 * Throw BAD_INPUT unless `format` is a cache format this model can keep: any for MLA, f32 only
 * for MHA/GQA/MQA (their K/V rows are per head, and the narrow kernels read latent rows).
 */
export function checkCacheFormat(c: ModelConfig, format: unknown): asserts format is CacheFormat {
  if (!CACHE_FORMATS.includes(format as CacheFormat)) {
    throw new MlaError('BAD_INPUT', `cache must be one of ${CACHE_FORMATS.map((f) => `'${f}'`).join(', ')}, got ${showValue(format)}`);
  }
  if (format !== 'f32' && c.attention.kind !== 'mla') {
    throw new MlaError('BAD_INPUT', `cache '${format}' needs an MLA model (it narrows the latent rows); ` +
      `this model has ${c.attention.kind === 'gqa' && c.attention.kvHeads === c.attention.heads ? 'MHA' : 'GQA/MQA'} attention: use cache 'f32'`);
  }
}

export class KvCache {
  /** Byte offset of the first row (layer 0, position 0). */
  readonly ptr: number;
  /** Positions it holds. */
  readonly capacity: number;
  readonly layers: number;
  readonly format: CacheFormat;
  /** Numbers in a row: what one token caches in one layer. */
  readonly row: number;
  /** Bytes from one row to the next. */
  readonly rowBytes: number;
  private readonly heap: Heap;

  /** Numbers one token caches per layer (docs/mla.md §4): MLA's [c_kv ; k^R], else k and v of every KV head. */
  static rowNumbers(a: AttentionConfig): number {
    return a.kind === 'mla' ? a.kvLoraRank + a.ropeDim : a.kvHeads * (a.headDim + a.vDim);
  }

  /** Bytes of one row in `format` (latent_row_bytes of assembly/latent.ts for the narrow ones). */
  static rowBytesOf(a: AttentionConfig, format: CacheFormat = 'f32'): number {
    if (format === 'f32' || a.kind !== 'mla') return KvCache.rowNumbers(a) * F;
    const dc = a.kvLoraRank;
    const codes = format === 'bf16' ? 2 * dc : format === 'int8' ? ceil(dc, 32) : ceil(dc, 32) / 2;
    return ceil(codes + (format === 'bf16' ? 0 : 8) + 2 * a.ropeDim, 16); // int8/int4: scale and sum of the codes
  }

  /** Bytes of `positions` positions, each `layers` rows of `row` f32 numbers. */
  static bytesFor(positions: number, layers: number, row: number): number {
    return positions * layers * row * F;
  }

  /** Bytes a cache of `positions` positions of this model takes in `format`. */
  static bytes(c: ModelConfig, positions: number, format: CacheFormat = 'f32'): number {
    return positions * c.layers * KvCache.rowBytesOf(c.attention, format);
  }

  /** Allocate a cache of `capacity` positions for this model (BAD_INPUT, nothing allocated, for a format it cannot keep). */
  constructor(heap: Heap, c: ModelConfig, capacity: number, format: CacheFormat = 'f32') {
    checkCacheFormat(c, format);
    this.heap = heap;
    this.capacity = capacity;
    this.layers = c.layers;
    this.format = format;
    this.row = KvCache.rowNumbers(c.attention);
    this.rowBytes = KvCache.rowBytesOf(c.attention, format);
    this.ptr = heap.alloc(this.bytes, `a ${format} KV cache of ${capacity} positions`);
  }

  /** Bytes it takes in memory. */
  get bytes(): number {
    return this.capacity * this.layers * this.rowBytes;
  }

  /** Byte offset of the row of (layer, position). */
  at(layer: number, pos: number): number {
    return this.ptr + (layer * this.capacity + pos) * this.rowBytes;
  }

  /** The f32 rows of `layer` at positions from … from + count − 1: a view of the memory, valid until it grows. */
  rows(layer: number, from: number, count: number): Float32Array {
    this.f32Only();
    return this.heap.f32(this.at(layer, from), count * this.row);
  }

  /** Every row of every layer of an f32 cache: a view of the memory, valid until it grows. */
  all(): Float32Array {
    this.f32Only();
    return this.heap.f32(this.ptr, this.bytes / F);
  }

  /** Every byte of every row, in any format: a view of the memory, valid until it grows (bench/ fills caches with it). */
  bytesView(): Uint8Array {
    return new Uint8Array(this.heap.memory.buffer, this.ptr, this.bytes);
  }

  /** Give the memory back; the cache must not be used afterwards. */
  release(): void {
    this.heap.release(this.ptr, this.bytes);
  }

  private f32Only(): void {
    if (this.format !== 'f32') throw new MlaError('BAD_INPUT', `a ${this.format} cache has no f32 rows to view`);
  }
}
