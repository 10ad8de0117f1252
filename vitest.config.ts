import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    // Node 20 compiles relaxed SIMD only behind this flag; both builds are tested.
    pool: 'forks',
    execArgv: ['--experimental-wasm-relaxed-simd'],
  },
});
