// Batched decode (bench/batch.ts --json) as an SVG: aggregate tokens/s against the batch size B, a
// panel per thread count, a colour per weights format, solid with the multi-row GEMV kernels and
// dashed without them (Vega-Lite rendered headless by vega's SVG renderer, as bench/plot.ts does).
//   node scripts/run-ts.mjs bench/batch-plot.ts [bench/results/batch.json] [bench/results/batch.svg]
import { readFileSync, writeFileSync } from 'node:fs';
import * as vega from 'vega';
import * as vl from 'vega-lite';

interface Row { threads: number; weights: string; simd: string; B: number; msPerStep: number; tokensPerSecond: number; msWithout: number; load: string }

const input = process.argv[2] ?? 'bench/results/batch.json', output = process.argv[3] ?? 'bench/results/batch.svg';
const rows: Row[] = JSON.parse(readFileSync(input, 'utf8'));
const values = rows.flatMap((r) => [
  { threads: `${r.threads} thread${r.threads > 1 ? 's' : ''}`, weights: r.weights, kernels: 'gemv-rows', B: r.B, tps: r.tokensPerSecond },
  { threads: `${r.threads} thread${r.threads > 1 ? 's' : ''}`, weights: r.weights, kernels: 'without gemv-rows', B: r.B, tps: (1000 * r.B) / r.msWithout },
]);
const loads = rows.flatMap((r) => r.load.split(' → ').map(Number));
const spec = {
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  title: {
    text: 'Batched decode (model.stepBatch), synthetic V2-Lite-dims model (2 layers), 256 positions each',
    subtitle: `${rows[0]?.simd ?? ''} build; shared 2-core machine, 1-minute load ${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}`,
    fontSize: 13,
  },
  data: { values },
  facet: { column: { field: 'threads', type: 'nominal', title: null } },
  spec: {
    width: 300, height: 260,
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'B', type: 'quantitative', title: 'sessions in the batch (B)', scale: { type: 'log', base: 2 }, axis: { values: [1, 2, 4, 8, 16] } },
      y: { field: 'tps', type: 'quantitative', title: 'aggregate tokens/s' },
      color: { field: 'weights', type: 'nominal', title: 'weights', legend: { orient: 'right' } },
      strokeDash: { field: 'kernels', type: 'nominal', title: null, legend: { orient: 'bottom' } },
    },
  },
  config: { font: 'sans-serif' },
};
const view = new vega.View(vega.parse(vl.compile(spec as any).spec), { renderer: 'none' });
writeFileSync(output, await view.toSVG());
view.finalize();
