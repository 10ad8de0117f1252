// Loss against cache size from bench/results/convert-fortune.json, as an SVG.
// Run: node scripts/run-ts.mjs bench/convert-plot.ts  (writes bench/results/convert-fortune.svg)
import { readFileSync, writeFileSync } from 'node:fs';

interface Row { cache: number; kvRank: number; ropeDim: number; method: string; loss: number }
const r: { base: number; twin: number; rows: Row[] } = JSON.parse(readFileSync('bench/results/convert-fortune.json', 'utf8'));
const W = 600, H = 340, L = 60, R = 185, T = 30, B = 45;
const xs = (c: number) => L + ((c - 56) / (136 - 56)) * (W - L - R);
const losses = [r.base, r.twin, ...r.rows.map((x) => x.loss)];
const lo = Math.floor(Math.min(...losses) * 20) / 20, hi = Math.ceil(Math.max(...losses) * 20) / 20;
const ys = (v: number) => T + ((hi - v) / (hi - lo)) * (H - T - B);
const best = (method: string) => [...new Set(r.rows.map((x) => x.cache))].sort((a, b) => a - b)
  .map((c) => r.rows.filter((x) => x.cache === c && x.method === method).sort((a, b) => a.loss - b.loss)[0]).filter(Boolean);
const line = (pts: Row[], color: string) => `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((p) => `${xs(p.cache)},${ys(p.loss)}`).join(' ')}"/>` +
  pts.map((p) => `<circle cx="${xs(p.cache)}" cy="${ys(p.loss)}" r="4" fill="${color}"/>`).join('');
let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`;
svg += `<rect width="${W}" height="${H}" fill="white"/>`;
svg += `<text x="${L}" y="18" font-weight="bold">fortune-gqa → MLA, training-free: held-out loss against KV cache</text>`;
for (let v = lo; v <= hi + 1e-9; v += 0.05) svg += `<line x1="${L}" x2="${W - R}" y1="${ys(v)}" y2="${ys(v)}" stroke="#eee"/><text x="${L - 6}" y="${ys(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`;
for (const c of [64, 80, 96, 128]) svg += `<text x="${xs(c)}" y="${H - B + 16}" text-anchor="middle">${c}</text>`;
svg += `<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle">cache numbers per token per layer</text>`;
svg += `<text transform="translate(14 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">nats/byte (held out)</text>`;
svg += line(best('weights'), '#1f77b4') + line(best('text'), '#ff7f0e') + line(best('samples'), '#9467bd');
svg += `<rect x="${xs(128) - 5}" y="${ys(r.base) - 5}" width="10" height="10" fill="black"/>`;
svg += `<path d="M${xs(64)},${ys(r.twin) - 7} l7,12 h-14 z" fill="#2ca02c"/>`;
const key: [string, string][] = [['#1f77b4', 'converted, weight SVD'], ['#ff7f0e', 'calibrated, held-out text'], ['#9467bd', 'own samples (default)'], ['black', 'GQA source (128)'], ['#2ca02c', 'MLA twin, trained (64)']];
key.forEach(([c, t], i) => { svg += `<rect x="${W - R + 12}" y="${T + 10 + i * 20}" width="10" height="10" fill="${c}"/><text x="${W - R + 28}" y="${T + 19 + i * 20}">${t}</text>`; });
svg += '</svg>\n';
writeFileSync('bench/results/convert-fortune.svg', svg);
