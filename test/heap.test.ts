import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MlaError } from '../src/errors.js';
import { Heap } from '../src/host/heap.js';

describe('heap', () => {
  it('hands out 64-byte aligned, non-overlapping blocks above the reserved first page', () => {
    const h = new Heap();
    const blocks = [1, 100, 64, 4096, 3].map((n) => [h.alloc(n), n] as const);
    for (const [p] of blocks) { expect(p % 64).toBe(0); expect(p).toBeGreaterThanOrEqual(65536); }
    const sorted = [...blocks].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i][0]).toBeGreaterThanOrEqual(sorted[i - 1][0] + sorted[i - 1][1]);
  });

  it('reuses and merges released blocks, and grows memory when needed', () => {
    const h = new Heap(65536 * 2);
    const a = h.alloc(1000), b = h.alloc(1000), c = h.alloc(1000);
    h.release(b, 1000);
    expect(h.alloc(500)).toBe(b);
    h.release(a, 1000); h.release(b, 500); h.release(c, 1000);
    expect(h.usedBytes).toBe(0);
    const big = h.alloc(10 * 65536);
    expect(h.byteLength).toBeGreaterThanOrEqual(big + 10 * 65536);
    h.f32(big, 10 * 16384).fill(1); // the new pages are writable through a fresh view
  });

  it('refuses more than 4 GiB with OUT_OF_MEMORY, and bad sizes with BAD_INPUT', () => {
    const h = new Heap();
    expect(() => h.alloc(2 ** 32)).toThrow(MlaError);
    try { h.alloc(2 ** 32, 'the weights'); } catch (e) {
      expect((e as MlaError).code).toBe('OUT_OF_MEMORY');
      expect((e as Error).message).toContain('the weights');
    }
    try { h.alloc(-1); } catch (e) { expect((e as MlaError).code).toBe('BAD_INPUT'); }
  });

  it('the kernels keep their static data below the reserved first page', () => {
    for (const build of ['simd', 'relaxed', 'simd-mt', 'relaxed-mt']) {
      const wat = readFileSync(new URL(`../build/kernels-${build}.wat`, import.meta.url), 'utf8');
      for (const m of wat.matchAll(/\(data \$\S+ \(i32\.const (\d+)\) "((?:[^"\\]|\\.)*)"\)/g)) {
        const bytes = m[2].replace(/\\[0-9a-f]{2}/g, 'x').length;
        expect(Number(m[1]) + bytes).toBeLessThan(65536);
      }
    }
  });

  it('the threaded builds: shared memory, and only constant data that each worker may re-write', () => {
    const read = (b: string) => readFileSync(new URL(`../build/kernels-${b}.wat`, import.meta.url), 'utf8');
    for (const build of ['simd', 'relaxed']) {
      const plain = read(build), mt = read(`${build}-mt`);
      expect(mt).toContain('(import "env" "memory" (memory $0 1 65536 shared))');
      // Every worker instantiates the module over the one memory, which writes its active data
      // segments again. That is harmless only because they are constants (math tables) that no
      // kernel writes, the same bytes each time; and no mutable state lives in memory: the few
      // globals are per instance (per thread). The -mt build is the same code as the plain one.
      const segments = (wat: string) => [...wat.matchAll(/\(data \$\S+ \(i32\.const \d+\) "(?:[^"\\]|\\.)*"\)/g)].map((m) => m[0]);
      expect(segments(mt)).toEqual(segments(plain));
      expect(mt.replace(/ 65536 shared\)/, ')')).toBe(plain);
      expect(mt).not.toMatch(/\(data \$\S+ "/); // no passive segments (memory.init) either
      expect(mt).not.toMatch(/\(global \$~lib\/memory\/__(heap_base|stack_pointer)/);
    }
  });

  it.skipIf(typeof SharedArrayBuffer === 'undefined')('a shared heap: SharedArrayBuffer views that survive a grow', () => {
    const h = new Heap(65536 * 2, { shared: true });
    expect(h.shared).toBe(true);
    const a = h.alloc(1000);
    const old = h.f32(a, 250);
    old.fill(3);
    h.alloc(100 * 65536);
    expect(h.memory.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(h.f32(a, 250)[249]).toBe(3);
    old[0] = 5; // an old view still reaches the same memory
    expect(h.f32(a, 1)[0]).toBe(5);
  });
});
