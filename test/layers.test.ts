// The house rules, read from the code: every import in src/ (static, type-only and dynamic) may
// only point at its own layer or one below, as each layer folder's README says ("May import: …"),
// and no files import each other in a circle. assembly/ imports nothing of src/; bench/ and
// scripts/ reach src/ only through its entries (index.ts, internal.ts).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { root } from './runtimes/helpers.js';

const SRC = path.join(root, 'src');
/** Files at the top of src/: they may import any layer. */
const TOP = new Set(['index.ts', 'cli.ts', 'internal.ts']);
/** A leaf every layer may import. */
const SHARED = 'errors';

function filesUnder(dir: string, ext: RegExp): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && ext.test(e.name))
    .map((e) => path.join(e.parentPath, e.name));
}

/** Relative specifiers a file imports: `import … from`, `export … from`, `import('…')`. */
export function importsOf(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'";]*?from\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)|(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (spec.startsWith('.')) found.push(spec);
  }
  return found;
}

/** The layer of a file in src/: its folder, 'errors' for errors.ts, 'top' for the entries. */
function layerOf(file: string): string {
  const rel = path.relative(SRC, file);
  if (!rel.includes(path.sep)) return rel === `${SHARED}.ts` ? SHARED : 'top';
  return rel.split(path.sep)[0];
}

/** Each layer folder's README: "May import: a, b". */
export function layerRules(): Map<string, Set<string>> {
  const rules = new Map<string, Set<string>>();
  for (const e of readdirSync(SRC, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const readme = readFileSync(path.join(SRC, e.name, 'README.md'), 'utf8');
    const line = /^May import: (.*)$/m.exec(readme);
    if (!line) throw new Error(`src/${e.name}/README.md has no "May import:" line`);
    rules.set(e.name, new Set(line[1].split(',').map((s) => s.trim()).filter((s) => s && s !== 'nothing')));
  }
  return rules;
}

function resolve(from: string, spec: string): string {
  return path.resolve(path.dirname(from), spec).replace(/\.js$/, '.ts');
}

/** Arrows that break the rules, as "from → to (why)". */
export function badArrows(files: Map<string, string>, rules: Map<string, Set<string>>): string[] {
  const bad: string[] = [];
  for (const [file, text] of files) {
    const from = layerOf(file);
    for (const spec of importsOf(text)) {
      const target = resolve(file, spec);
      const name = `${path.relative(root, file)} → ${spec}`;
      if (!target.startsWith(SRC + path.sep)) {
        // Only generated modules lie outside src/: the kernels' bindings and the worker's source text.
        if (from !== 'host' || !/build[\\/](kernels-simd|worker-source)\.ts$/.test(target)) bad.push(`${name} (outside src/)`);
        continue;
      }
      const to = layerOf(target);
      if (to === 'top' && from !== 'top') bad.push(`${name} (an entry file is above every layer)`);
      else if (from === SHARED && to !== SHARED) bad.push(`${name} (errors.ts imports nothing)`);
      else if (from !== 'top' && from !== SHARED && to !== from && to !== SHARED && !rules.get(from)?.has(to)) {
        bad.push(`${name} (${from} may import ${[...(rules.get(from) ?? [])].join(', ') || 'nothing'})`);
      }
    }
  }
  return bad;
}

/** Every cycle of imports among `files`, each as a list of files. */
export function cycles(files: Map<string, string>): string[][] {
  const edges = new Map<string, string[]>();
  for (const [file, text] of files) edges.set(file, importsOf(text).map((s) => resolve(file, s)).filter((t) => files.has(t)));
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    stack.push(f);
    for (const t of edges.get(f) ?? []) {
      if (state.get(t) === 'open') found.push(stack.slice(stack.indexOf(t)).map((x) => path.relative(root, x)));
      else if (!state.has(t)) visit(t);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of files.keys()) if (!state.has(f)) visit(f);
  return found;
}

function sources(): Map<string, string> {
  return new Map(filesUnder(SRC, /\.ts$/).map((f) => [f, readFileSync(f, 'utf8')]));
}

/** The files of bench/ and scripts/ (TypeScript and JavaScript). */
function outsiders(): Map<string, string> {
  const files = ['bench', 'scripts'].flatMap((d) => filesUnder(path.join(root, d), /\.(ts|mjs|js)$/));
  return new Map(files.map((f) => [f, readFileSync(f, 'utf8')]));
}

/** The entries of src/ that bench/ and scripts/ may import. */
const ENTRIES = new Set(['index.ts', 'internal.ts']);

/** Imports from outside src/ that reach into it other than through an entry, as "from → spec". */
export function backDoors(files: Map<string, string>): string[] {
  const bad: string[] = [];
  for (const [file, text] of files) {
    for (const spec of importsOf(text)) {
      const target = resolve(file, spec);
      if (target.startsWith(SRC + path.sep) && !ENTRIES.has(path.relative(SRC, target))) bad.push(`${path.relative(root, file)} → ${spec}`);
    }
  }
  return bad;
}

describe('layers', () => {
  it('every folder of src/ states what it may import, and only lower layers', () => {
    const rules = layerRules();
    expect([...rules.keys()].sort()).toEqual(['convert', 'formats', 'generate', 'host', 'model', 'serve']);
    const order = ['host', 'formats', 'model', 'generate', 'convert', 'serve'];
    for (const [layer, allowed] of rules) {
      for (const a of allowed) {
        if (a === SHARED) continue;
        expect(order.indexOf(a), `${layer} may import ${a}`).toBeGreaterThanOrEqual(0);
        expect(order.indexOf(a), `${layer} may import ${a}`).toBeLessThan(order.indexOf(layer));
      }
    }
  });

  it('no import in src/ goes up a layer or sideways', () => {
    expect(badArrows(sources(), layerRules())).toEqual([]);
  });

  it('no files of src/ import each other in a circle', () => {
    expect(cycles(sources())).toEqual([]);
  });

  it('the checks catch a wrong arrow and a cycle', () => {
    const files = sources();
    const pool = path.join(SRC, 'host/pool.ts'), weights = path.join(SRC, 'model/weights.ts');
    const up = new Map(files);
    up.set(pool, `import type { Matrix } from '../model/weights.js';\n${files.get(pool)}`);
    expect(badArrows(up, layerRules())).toEqual(['src/host/pool.ts → ../model/weights.js (host may import errors)']);
    const circle = new Map(files);
    const decoder = path.join(SRC, 'model/decoder.ts');
    circle.set(weights, `import { CHUNK } from './decoder.js';\n${files.get(weights)}`);
    expect(cycles(circle).some((c) => c.includes('src/model/weights.ts') && c.includes(path.relative(root, decoder)))).toBe(true);
    const outside = new Map(files);
    outside.set(pool, `import { x } from '../../build/worker-node.cjs';\n${files.get(pool)}`);
    expect(badArrows(outside, layerRules())).toEqual(['src/host/pool.ts → ../../build/worker-node.cjs (outside src/)']);
    const dynamic = new Map(files);
    dynamic.set(pool, `${files.get(pool)}\nconst later = () => import('../generate/model.js');`);
    expect(badArrows(dynamic, layerRules())).toHaveLength(1);
  });

  it('bench/ and scripts/ reach src/ only through index.ts or internal.ts', () => {
    const files = outsiders();
    expect(files.size).toBeGreaterThan(10);
    expect(backDoors(files)).toEqual([]);
  });

  it('the check catches a back door into src/', () => {
    const files = outsiders();
    const decode = path.join(root, 'bench/decode.ts'), profile = path.join(root, 'scripts/profile-step.ts');
    const bad = new Map(files);
    bad.set(decode, `import { Decoder } from '../src/model/decoder.js';\n${files.get(decode)}`);
    bad.set(profile, `${files.get(profile)}\nconst later = () => import('../src/host/pool.js');`);
    expect(backDoors(bad)).toEqual(['bench/decode.ts → ../src/model/decoder.js', 'scripts/profile-step.ts → ../src/host/pool.js']);
  });

  it('assembly/ imports nothing of src/', () => {
    for (const file of filesUnder(path.join(root, 'assembly'), /\.ts$/)) {
      for (const spec of importsOf(readFileSync(file, 'utf8'))) expect(resolve(file, spec), file).not.toContain(`${path.sep}src${path.sep}`);
    }
  });
});
