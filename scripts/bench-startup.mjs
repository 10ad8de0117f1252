// npm run bench:startup [-- --runs N]: bundle bench/startup.ts into build/ and run benchStartup(),
// which spawns Node, Deno and Bun; prints the Markdown table.
import { build } from 'esbuild';

await build({
  entryPoints: ['bench/startup.ts'],
  outfile: 'build/bench-startup.mjs',
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'es2022',
  logLevel: 'warning',
});
const i = process.argv.indexOf('--runs');
const runs = i > 0 ? Number(process.argv[i + 1]) : undefined;
const { benchStartup } = await import(new URL('../build/bench-startup.mjs', import.meta.url).href);
const { table } = await benchStartup({ runs, log: (s) => console.error(s) });
console.log(table);
