import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Builds dist/ if stale, installs Deno if missing, packs the package into a consumer project.
    globalSetup: ['test/runtimes/setup.ts'],
    testTimeout: 120_000,
    // Node 20 compiles relaxed SIMD only behind this flag; both builds are tested.
    pool: 'forks',
    execArgv: ['--experimental-wasm-relaxed-simd'],
  },
});
