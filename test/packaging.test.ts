// Packaging: what `npm pack` ships, the `exports` map, a browser bundle of dist/index.js with no
// Node built-in reachable at the top level, bundlers resolving 'mla-wasm' for the browser and for
// workers, the declarations under Node's module resolution, the kernels' size and imports, and the
// options that take the kernels in (`wasmModule`, `wasmBytes`) with the model as a file map.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { build } from 'esbuild';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { loadModel } from '../src/index.js';
import { root } from './runtimes/helpers.js';

const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

describe('package.json', () => {
  it('exports one ESM entry, with its declarations, under every runtime\'s and bundler\'s condition', () => {
    const main = pkg.exports['.'];
    // `types` first: TypeScript takes the first condition that matches.
    expect(Object.keys(main)[0]).toBe('types');
    expect(main.types).toBe('./dist/index.d.ts');
    for (const c of ['node', 'deno', 'bun', 'workerd', 'edge-light', 'worker', 'browser', 'import', 'default']) {
      expect(main[c], c).toBe('./dist/index.js');
    }
    expect(Object.keys(main).at(-1)).toBe('default');
    expect(pkg.type).toBe('module');
    expect(pkg.engines.node).toBe('>=20');
  });

  it('installs into a project with no warning from npm (no install scripts, engines that fit)', () => {
    expect(pkg.scripts).not.toHaveProperty('prepare');
    expect(pkg.scripts).not.toHaveProperty('install');
    expect(pkg.scripts).not.toHaveProperty('postinstall');
    expect(inject('consumerInstallLog')).not.toMatch(/warn/i);
  });

  it('every export points at a file the build made', () => {
    for (const [subpath, target] of Object.entries(pkg.exports as Record<string, string | Record<string, string>>)) {
      for (const file of typeof target === 'string' ? [target] : Object.values(target)) {
        const concrete = file.replace('*', 'fortune-mla/config.json');
        expect(existsSync(path.join(root, concrete)), `${subpath} → ${file}`).toBe(true);
      }
    }
  });

  it('npm pack ships the build, the kernels beside it, their declarations, the default model and the docs the README links, and no sources', () => {
    const out = execFileSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const files = new Set<string>(JSON.parse(out)[0].files.map((f: { path: string }) => f.path));
    for (const f of ['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/host/kernels.d.ts', 'dist/cli.js',
      'build/kernels-simd.wasm', 'build/kernels-relaxed.wasm', 'build/kernels-simd.d.ts',
      'models/fortune-mla/config.json', 'models/fortune-mla/model.safetensors', 'examples/serve.mjs']) {
      expect(files, f).toContain(f);
    }
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    for (const [, link] of readme.matchAll(/\]\((docs\/[^)#]+)/g)) expect(files, `README links ${link}`).toContain(link);
    for (const f of files) expect(f).not.toMatch(/^(src|test|bench|assembly|scripts)\/|\.wat$|^build\/bench/);
  });
});

describe('bundling for the browser', () => {
  it('dist/index.js bundles for the browser with Node built-ins reachable only through lazy import()', async () => {
    const result = await build({
      entryPoints: [path.join(root, 'dist/index.js')],
      bundle: true, write: false, metafile: true, format: 'esm', platform: 'browser', logLevel: 'silent',
      // Kept as imports, to be looked at below: esbuild cannot bundle Node's built-ins for a browser.
      external: ['node:*'],
    });
    const imports = Object.values(result.metafile!.outputs).flatMap((o) => o.imports);
    const builtins = imports.filter((i) => i.path.startsWith('node:') || ['fs', 'path', 'url', 'module', 'worker_threads'].includes(i.path));
    expect(builtins.length).toBeGreaterThan(0); // node:fs, read lazily for file: sources
    for (const i of builtins) expect(i, `${i.path} is imported at the top level`).toMatchObject({ kind: 'dynamic-import', external: true });
    const code = result.outputFiles![0].text;
    // The one require( is inside the source text of the Node worker_threads worker (evaluated only
    // in a Node-compatible worker, never by the bundle itself; build/worker-source.js).
    const requires = code.match(/\brequire\([^)]*\)/g) ?? [];
    expect(requires).toEqual(['require("node:worker_threads")']);
    expect(code).toMatch(/NODE_WORKER = '[^'\n]*var import_node_worker_threads = require\("node:worker_threads"\);/);
    expect(code).not.toMatch(/\bprocess\.(env|argv|stdout|stderr|exit|platform|versions)\b/);
    expect(code).not.toMatch(/^import\s[^;]*from\s*["']node:/m);
  });

  it.each([
    ['a browser bundle', { platform: 'browser' as const }],
    ['a Cloudflare Workers bundle (conditions workerd, worker, browser)', { platform: 'neutral' as const, conditions: ['workerd', 'worker', 'browser'], mainFields: ['module', 'main'] }],
  ])('`import \'mla-wasm\'` in an installed project resolves to dist/index.js for %s', async (_what, options) => {
    const dir = inject('consumerDir');
    const result = await build({
      stdin: { contents: "import { loadModel } from 'mla-wasm'; console.log(loadModel);", resolveDir: dir, loader: 'js' },
      bundle: true, write: false, metafile: true, format: 'esm', external: ['node:*'], logLevel: 'silent', ...options,
    });
    const inputs = Object.keys(result.metafile!.inputs);
    expect(inputs.filter((i) => i.endsWith('node_modules/mla-wasm/dist/index.js'))).toHaveLength(1);
  });
});

describe('declarations', () => {
  it('type-check for a TypeScript user under Node\'s own module resolution (nodenext)', () => {
    const dir = inject('consumerDir');
    writeFileSync(path.join(dir, 'types-check.mts'), [
      "import { loadModel, MlaError, type Model, type Session, type ModelConfig, type FileMap } from 'mla-wasm';",
      "const files: FileMap = { 'config.json': new Uint8Array(), 'model.safetensors': new Uint8Array() };",
      'const model: Model = await loadModel(files, { simd: "auto", wasmModule: undefined as WebAssembly.Module | undefined });',
      'const session: Session = model.createSession({ contextLength: 8 });',
      'const logits: Float32Array = session.step(1);',
      'const config: ModelConfig = model.config;',
      'export const used = [logits, config, MlaError];',
      '',
    ].join('\n'));
    writeFileSync(path.join(dir, 'tsconfig.types-check.json'), JSON.stringify({
      compilerOptions: {
        noEmit: true, strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022',
        lib: ['es2022', 'dom'], types: [], skipLibCheck: false,
      },
      files: ['types-check.mts'],
    }));
    const tsc = path.join(root, 'node_modules/typescript/bin/tsc');
    try {
      execFileSync(process.execPath, [tsc, '-p', 'tsconfig.types-check.json'], { cwd: dir, encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      throw new Error(`tsc failed:\n${(e as { stdout?: string }).stdout}`);
    }
  });
});

describe('the kernels', () => {
  const wasm = ['simd', 'relaxed'].map((b) => `build/kernels-${b}.wasm`);
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');

  it.each(wasm)('%s imports nothing but its memory and exports no runtime', (file) => {
    const module = new WebAssembly.Module(readFileSync(path.join(root, file)));
    for (const i of WebAssembly.Module.imports(module)) expect(i).toMatchObject({ module: 'env', name: 'memory', kind: 'memory' });
    const names = WebAssembly.Module.exports(module).map((e) => e.name);
    expect(names).toContain('build_is_relaxed');
    // AssemblyScript's managed runtime (`__new`, `__pin`, `__collect`, …) would show up here.
    expect(names.filter((n) => n.startsWith('__'))).toEqual([]);
  });

  it.each(wasm)('%s stays small, and the README states its size to within a tenth', (file) => {
    const bytes = statSync(path.join(root, file)).size;
    // Every kernel family in both builds (f32, narrow weights, K-quants, latent cache, multi-row GEMV): about 27 KB gzipped.
    expect(bytes).toBeLessThan(116 * 1024);
    const row = new RegExp('\\| `' + file.replace(/[.]/g, '\\.') + '` \\| ([\\d,]+) \\|').exec(readme);
    expect(row, `README.md has a size row for ${file}`).not.toBeNull();
    const stated = Number(row![1].replace(/,/g, ''));
    expect(Math.abs(stated - bytes) / bytes).toBeLessThanOrEqual(0.1);
  });
});

describe('kernels and model handed in: no file system, no fetch', () => {
  const files = {
    'config.json': new Uint8Array(readFileSync(path.join(root, 'models/fortune-mla/config.json'))),
    'model.safetensors': new Uint8Array(readFileSync(path.join(root, 'models/fortune-mla/model.safetensors'))),
  };
  const ids = [256, ...new TextEncoder().encode('Q: Why?\nA:')];
  afterEach(() => { vi.unstubAllGlobals(); });

  it.each(['wasmModule', 'wasmBytes'] as const)('%s with a file map gives the logits of the default load', async (option) => {
    const expected = (await loadModel(undefined, { simd: 'simd' })).forward(ids);
    const bytes = new Uint8Array(readFileSync(path.join(root, 'build/kernels-simd.wasm')));
    const kernels = option === 'wasmModule' ? { wasmModule: await WebAssembly.compile(bytes) } : { wasmBytes: bytes };
    vi.stubGlobal('fetch', () => { throw new Error('fetch was called'); });
    const model = await loadModel(files, kernels);
    expect(model.simd).toBe('simd');
    expect(model.forward(ids)).toEqual(expected);
  });

  it('a CommonJS bundle (no import.meta) loads with kernels and model handed in; without a model it says why (BAD_SOURCE)', async () => {
    const out = await build({
      entryPoints: [path.join(root, 'dist/index.js')], bundle: true, write: false, format: 'cjs', platform: 'node', logLevel: 'silent',
    });
    const mod = { exports: {} as Record<string, any> };
    new Function('module', 'exports', 'require', out.outputFiles[0].text)(mod, mod.exports, createRequire(import.meta.url));
    const wasmBytes = new Uint8Array(readFileSync(path.join(root, 'build/kernels-simd.wasm')));
    const model = await mod.exports.loadModel(files, { wasmBytes });
    expect(model.forward(ids)).toEqual((await loadModel(files, { wasmBytes })).forward(ids));
    const err = await mod.exports.loadModel(undefined, { wasmBytes }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'MlaError', code: 'BAD_SOURCE' });
  });

  it('a relaxed module handed in is recognised as relaxed', async () => {
    const wasmModule = await WebAssembly.compile(readFileSync(path.join(root, 'build/kernels-relaxed.wasm')));
    expect((await loadModel(files, { wasmModule })).simd).toBe('relaxed');
  });
});
