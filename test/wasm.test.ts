import { describe, expect, it } from 'vitest';
import { chooseBuild, detectSimd } from '../src/host/kernels.js';
import { loadKernels } from '../src/host/load.js';

describe('kernel module loading', () => {
  it('detects SIMD and relaxed SIMD by validating tiny modules', () => {
    const can = detectSimd();
    expect(can.simd).toBe(true);
    // The test runner passes --experimental-wasm-relaxed-simd, so Node 20 can compile it here.
    expect(can.relaxed).toBe(true);
    expect(chooseBuild('auto')).toBe('relaxed');
  });

  it.each(['simd', 'relaxed'] as const)('loads the %s build when asked', async (simd) => {
    const { kernels, build } = await loadKernels({ simd });
    expect(build).toBe(simd);
    expect(kernels.build_is_relaxed()).toBe(simd === 'relaxed' ? 1 : 0);
  });
});
