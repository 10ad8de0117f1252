import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MlaError } from '../src/errors.js';
import { Heap } from '../src/heap.js';

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
    for (const build of ['simd', 'relaxed']) {
      const wat = readFileSync(new URL(`../build/kernels-${build}.wat`, import.meta.url), 'utf8');
      for (const m of wat.matchAll(/\(data \$\S+ \(i32\.const (\d+)\) "((?:[^"\\]|\\.)*)"\)/g)) {
        const bytes = m[2].replace(/\\[0-9a-f]{2}/g, 'x').length;
        expect(Number(m[1]) + bytes).toBeLessThan(65536);
      }
    }
  });
});
