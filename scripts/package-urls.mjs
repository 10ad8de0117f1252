// esbuild plugins: packageUrls for bundles of src/index.ts or src/cli.ts placed in dist/ (or any folder one
// below the package root).
import { readFile } from 'node:fs/promises';

// Files the package finds beside itself (the kernels, the built-in model) are named by
// new URL('../../…', import.meta.url) in src/<layer>/*.ts, two folders below the root, for the
// tests, which run the sources; in the bundle they must be relative to dist/index.js.
export const packageUrls = {
  name: 'package-urls',
  setup(b) {
    b.onLoad({ filter: /src[\\/][a-z]+[\\/][^\\/]+\.ts$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      if (!text.includes("new URL('../../")) return undefined;
      return { contents: text.replaceAll("new URL('../../", "new URL('../"), loader: 'ts' };
    });
  },
};

// For a bundle that runs in a page: node: imports are the Node-only paths src/ and bench/ take at
// run time (never in a page), so they resolve to an empty module.
export const nodeBuiltinsAbsent = {
  name: 'node-builtins-absent',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (a) => ({ path: a.path, namespace: 'absent' }));
    b.onLoad({ filter: /.*/, namespace: 'absent' }, () => ({ contents: 'module.exports = {};', loader: 'js' }));
  },
};
