// node scripts/run-ts.mjs bench/fit.ts
//
// Which weight formats fit in WebAssembly's 4 GiB for well-known MLA configs: the same memoryNeed
// that loadModel checks before it allocates (weights, scratch for one chunk, a chunk's f32 cache,
// one thread). Nothing is timed; the table goes to bench/results/fit.md.
import { writeFileSync } from 'node:fs';
import { loadKernels, memoryNeed, parseConfig, weightPlan, WASM_MEMORY_LIMIT } from '../src/internal.js';
import { DEEPSEEK_V2_LITE, FORTUNE_MLA, MINICPM3_4B, SMOLLM_MLA } from './mla-configs.js';

const CONFIGS = [FORTUNE_MLA, SMOLLM_MLA, MINICPM3_4B, DEEPSEEK_V2_LITE];

const { kernels } = await loadKernels({ threads: 1 });
const size = (b: number) => (b < 2 ** 30 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${(b / 2 ** 30).toFixed(2)} GiB`);
const count = (n: number) => (n < 1e9 ? `${(n / 1e6).toFixed(1)} M` : `${(n / 1e9).toFixed(2)} B`);
const formats = ['f32', 'bf16', 'int8', 'int4'] as const;
const lines = [
  '# Which weight formats fit in 4 GiB',
  '',
  '`node scripts/run-ts.mjs bench/fit.ts`: `memoryNeed`, the check `loadModel` makes before it',
  'allocates (weights as placed, scratch for a chunk, a chunk\'s f32 KV cache, one thread): the',
  'WebAssembly memory each format needs; ✗ = refused with `OUT_OF_MEMORY`.',
  '',
  `| model | parameters | ${formats.join(' | ')} |`,
  `|---|---|${formats.map(() => '---').join('|')}|`,
];
for (const { name, note, config } of CONFIGS) {
  const c = parseConfig(config);
  const cells = formats.map((f) => {
    const need = memoryNeed(c, kernels, { plan: weightPlan(f) });
    return `${size(need.total)} ${need.total <= WASM_MEMORY_LIMIT ? '✓' : '✗'}`;
  });
  const params = memoryNeed(c, kernels).weights / 4;
  lines.push(`| ${name}${note ? ` (${note})` : ''} | ${count(params)} | ${cells.join(' | ')} |`);
}
writeFileSync('bench/results/fit.md', lines.join('\n') + '\n');
console.log(lines.join('\n'));
