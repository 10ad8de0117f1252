// node --import ./test/runtimes/no-node-builtins.mjs …: from here on, every import of a Node
// built-in (node:fs, fs/promises, …), static or dynamic, fails, and is reported on stderr as
// "edge: refused …", so a test can tell that nothing in the program even tried one.
import { register } from 'node:module';

// (The hooks run on their own thread; the report is written synchronously so that it is not lost
// when the program then dies of the refusal.)
const hooks = `
import { writeSync } from 'node:fs';
import { builtinModules } from 'node:module';
const builtins = new Set(builtinModules);
export async function resolve(specifier, context, next) {
  if (specifier.startsWith('node:') || builtins.has(specifier)) {
    writeSync(2, 'edge: refused import of ' + specifier + ' from ' + context.parentURL + '\\n');
    throw new Error('edge: no Node built-ins here (' + specifier + ')');
  }
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
