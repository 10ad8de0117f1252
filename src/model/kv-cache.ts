// A session's KV cache in the model's memory: for each layer, `capacity` rows of `row` numbers
// (f32), one per position, layer after layer. The one place that knows its layout and its size.
import { cacheNumbersPerTokenPerLayer, type AttentionConfig, type ModelConfig } from '../formats/config.js';
import type { Heap } from '../host/heap.js';

const F = 4; // bytes per f32

export class KvCache {
  /** Byte offset of the first row (layer 0, position 0). */
  readonly ptr: number;
  /** Positions it holds. */
  readonly capacity: number;
  readonly layers: number;
  /** Numbers in a row: what one token caches in one layer. */
  readonly row: number;
  private readonly heap: Heap;

  /** Numbers one token caches per layer (docs/mla.md §4): MLA's [c_kv ; k^R], else k and v of every KV head. */
  static rowNumbers(a: AttentionConfig): number {
    return cacheNumbersPerTokenPerLayer(a);
  }

  /** Bytes of `positions` positions, each `layers` rows of `row` numbers. */
  static bytesFor(positions: number, layers: number, row: number): number {
    return positions * layers * row * F;
  }

  /** Bytes a cache of `positions` positions of this model takes. */
  static bytes(c: ModelConfig, positions: number): number {
    return KvCache.bytesFor(positions, c.layers, KvCache.rowNumbers(c.attention));
  }

  /** Allocate a cache of `capacity` positions for this model. */
  constructor(heap: Heap, c: ModelConfig, capacity: number) {
    this.heap = heap;
    this.capacity = capacity;
    this.layers = c.layers;
    this.row = KvCache.rowNumbers(c.attention);
    this.ptr = heap.alloc(this.bytes, `a KV cache of ${capacity} positions`);
  }

  /** Bytes it takes in memory. */
  get bytes(): number {
    return KvCache.bytesFor(this.capacity, this.layers, this.row);
  }

  /** Byte offset of the row of (layer, position). */
  at(layer: number, pos: number): number {
    return this.ptr + (layer * this.capacity + pos) * this.row * F;
  }

  /** The rows of `layer` at positions from … from + count − 1: a view of the memory, valid until it grows. */
  rows(layer: number, from: number, count: number): Float32Array {
    return this.heap.f32(this.at(layer, from), count * this.row);
  }

  /** Every row of every layer: a view of the memory, valid until it grows. */
  all(): Float32Array {
    return this.heap.f32(this.ptr, this.bytes / F);
  }

  /** Give the memory back; the cache must not be used afterwards. */
  release(): void {
    this.heap.release(this.ptr, this.bytes);
  }
}
