import { MlaError } from '../errors.js';

const PAGE = 65536;
const MAX_PAGES = 65536; // 4 GiB: WebAssembly's limit for 32-bit memories
const ALIGN = 64;        // a cache line: every block starts aligned for SIMD and for the caches
// The kernels' own static data (if any) lives below this; the heap never hands it out.
const RESERVED = PAGE;

const INITIAL_BYTES = 16 * PAGE;

interface Block { ptr: number; bytes: number }

/** Bytes a block of `bytes` takes (alloc rounds to a cache line). */
function blockSize(bytes: number): number {
  return Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
}

/** The byteLength of a new Heap()'s memory once it holds blocks of these sizes (nothing freed). */
export function heapBytesFor(blocks: number[]): number {
  const top = blocks.reduce((sum, b) => sum + blockSize(b), RESERVED);
  return Math.max(Math.ceil(INITIAL_BYTES / PAGE), Math.ceil(top / PAGE)) * PAGE;
}

/**
 * The host-owned WebAssembly memory and a first-fit allocator over it.
 * Weights, KV caches and scratch buffers are blocks of it; kernels get their byte offsets.
 * Typed-array views are made on demand from the current buffer, so a grow never leaves a
 * stale view behind. A shared memory's old views stay valid (only shorter), which the thread
 * pool relies on for its control block.
 */
export class Heap {
  readonly memory: WebAssembly.Memory;
  /** A shared memory (SharedArrayBuffer), which the threaded kernel builds import. */
  readonly shared: boolean;
  private free: Block[] = [];
  private top = RESERVED;

  constructor(initialBytes = INITIAL_BYTES, options: { shared?: boolean } = {}) {
    const initial = Math.max(2, Math.ceil(initialBytes / PAGE));
    this.shared = options.shared === true;
    // A shared memory must state its maximum, and must match the module's (--maximumMemory 65536).
    this.memory = new WebAssembly.Memory({ initial, maximum: MAX_PAGES, shared: this.shared } as WebAssembly.MemoryDescriptor);
  }

  get byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  /** Bytes handed out and not freed. */
  get usedBytes(): number {
    return this.top - RESERVED - this.free.reduce((s, b) => s + b.bytes, 0);
  }

  /** Reserve `bytes` (rounded up to 64) and return the block's byte offset. Contents are not zeroed. */
  alloc(bytes: number, what = 'buffer'): number {
    if (!Number.isFinite(bytes) || bytes < 0) throw new MlaError('BAD_INPUT', `cannot allocate ${bytes} bytes for ${what}`);
    const size = blockSize(bytes);
    const i = this.free.findIndex((b) => b.bytes >= size);
    if (i >= 0) {
      const b = this.free[i];
      const ptr = b.ptr;
      if (b.bytes === size) this.free.splice(i, 1);
      else { b.ptr += size; b.bytes -= size; }
      return ptr;
    }
    const ptr = this.top;
    const end = ptr + size;
    if (end > MAX_PAGES * PAGE) {
      throw new MlaError('OUT_OF_MEMORY',
        `${what} needs ${fmtBytes(size)} more, but WebAssembly memory would pass its 4 GiB limit (in use: ${fmtBytes(this.top)})`);
    }
    if (end > this.byteLength) {
      const pages = Math.ceil((end - this.byteLength) / PAGE);
      try { this.memory.grow(pages); } catch {
        throw new MlaError('OUT_OF_MEMORY', `could not grow WebAssembly memory by ${fmtBytes(pages * PAGE)} for ${what}`);
      }
    }
    this.top = end;
    return ptr;
  }

  /** Give a block back. */
  release(ptr: number, bytes: number): void {
    const size = blockSize(bytes);
    this.free.push({ ptr, bytes: size });
    this.free.sort((a, b) => a.ptr - b.ptr);
    // Merge neighbours, and give the last block back to the top.
    const merged: Block[] = [];
    for (const b of this.free) {
      const last = merged[merged.length - 1];
      if (last && last.ptr + last.bytes === b.ptr) last.bytes += b.bytes;
      else merged.push({ ...b });
    }
    const tail = merged[merged.length - 1];
    if (tail && tail.ptr + tail.bytes === this.top) { this.top = tail.ptr; merged.pop(); }
    this.free = merged;
  }

  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, length);
  }

  i32(ptr: number, length: number): Int32Array {
    return new Int32Array(this.memory.buffer, ptr, length);
  }

  u8(ptr: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, length);
  }
}

export function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}
