// The decode comparison as an SVG: a Vega-Lite spec compiled to Vega and rendered headless with
// vega's own SVG renderer (View.toSVG, no browser and no canvas).
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { DecodeRow } from './decode.js';

export async function decodePlot(rows: DecodeRow[], subtitle: string): Promise<string> {
  const values = rows.map((r) => ({
    variant: r.variant,
    context: r.context,
    cacheMiB: r.cacheBytes / 2 ** 20,
    msPerToken: r.msPerToken,
  }));
  const order = [...new Set(rows.map((r) => r.variant))];
  const x = {
    field: 'context', type: 'quantitative', title: 'context (tokens)', scale: { type: 'log', base: 2, nice: false },
    axis: { values: [...new Set(rows.map((r) => r.context))], labelExpr: "datum.value >= 1024 ? datum.value / 1024 + 'k' : datum.value", labelOverlap: false, grid: true },
  };
  const color = { field: 'variant', type: 'nominal', title: null, sort: order, legend: { orient: 'bottom' } };
  const panel = (field: string, title: string, filter?: string) => ({
    width: 300, height: 230,
    ...(filter ? { transform: [{ filter }] } : {}),
    mark: { type: 'line', point: true },
    encoding: { x, y: { field, type: 'quantitative', title, scale: { type: 'log' } }, color },
  });
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'Decode, DeepSeek-V2-Lite attention dims (2 layers): MLA vs MHA / GQA / MQA', subtitle, fontSize: 13 },
    data: { values },
    hconcat: [
      // Both MLA paths cache the same latent rows: one line.
      panel('cacheMiB', 'KV cache, all layers (MiB; MLA: either path)', "datum.variant !== 'MLA naive'"),
      panel('msPerToken', 'decode time per token (ms)'),
    ],
    config: { font: 'sans-serif' },
  };
  const compiled = vl.compile(spec as any).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}
