// The incremental JSON acceptor against JSON.parse (and a strict UTF-8 decoder): every byte prefix
// of many valid texts is accepted and complete exactly when it parses; mutated texts are complete
// exactly when they parse, and a refused byte leaves no completion that parses; the two bounds
// (whitespace runs, nesting) and UTF-8 split anywhere.
import { describe, expect, it } from 'vitest';
import { JsonAcceptor, MAX_JSON_DEPTH, MAX_JSON_WHITESPACE } from '../src/generate/json-acceptor.js';
import { rng } from './helpers.js';

const utf8 = new TextEncoder();
const strict = new TextDecoder('utf-8', { fatal: true });

/** Whether bytes are one JSON text with nothing after it (strict UTF-8, as RFC 8259 wants). */
function parses(bytes: Uint8Array): boolean {
  try {
    const text = strict.decode(bytes);
    if (text !== text.trim()) return false; // the acceptor takes nothing before or after the value
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Feed bytes one at a time: how many were accepted, and whether all of them make a whole value. */
function run(bytes: Uint8Array, anyValue = true): { taken: number; complete: boolean } {
  const a = new JsonAcceptor(anyValue);
  for (let i = 0; i < bytes.length; i++) if (!a.pushByte(bytes[i])) return { taken: i, complete: false };
  return { taken: bytes.length, complete: a.complete };
}

const VALID = [
  '{}', '[]', '""', '0', '-0', '12', '-12.5e+3', '0.5E-7', '1e9', '3.25', 'true', 'false', 'null',
  '{"a":1}', '{ "a" : [1, 2.0, -3e2, true, false, null, {"b": {}}] }', '[[[[]]], [{}], ""]',
  '"esc \\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83C\\uDF89 \\uffff"', '"é日🎉 mixed ascii"',
  '{"k\\u0041": "v", "": 0, "nested": {"x": [1, {"y": [null]}]}}', '{\r\n  "a" :\t1\n}', '[0,-0.0,1E+2,1e-0]',
  '{"ü": "\u007f", "ctl": "\\u0000"}',
];
const INVALID = [
  '', '{', '{"a"}', '{"a":}', '{"a":1,}', '[1,]', '[,1]', '01', '-', '-a', '1.', '1.e3', '1e', '1e+', '+1', '.5',
  'tru', 'nul', 'True', '"abc', '"\\x"', '"\\u12G4"', '"\\u12"', '{a:1}', "{'a':1}", '[1 2]', '{"a" 1}', '{"a":1 "b":2}',
  '"tab\there"', '"nl\nhere"', '{}}', '[]]', '{} {}', '1 2', 'nan', 'Infinity', '"\\U0041"', '[1]x',
];

/** Random JSON values through JSON.stringify, with random whitespace put between tokens. */
function randomJson(r: (lo?: number, hi?: number) => number, depth = 0): unknown {
  const pick = Math.floor(r(0, depth > 3 ? 5 : 7));
  const chars = ['a', 'Z', ' ', '"', '\\', '/', '\n', '\u0001', 'é', '日', '🎉', '\u2028', '\ud800x'];
  switch (pick) {
    case 0: return null;
    case 1: return r() > 0;
    case 2: return Number((r(-1e6, 1e6) * 10 ** Math.floor(r(-8, 8))).toPrecision(Math.floor(r(1, 17))));
    case 3: return Math.floor(r(-1000, 1000));
    case 4: return Array.from({ length: Math.floor(r(0, 6)) }, () => chars[Math.floor(r(0, chars.length))]).join('');
    case 5: return Array.from({ length: Math.floor(r(0, 4)) }, () => randomJson(r, depth + 1));
    default: return Object.fromEntries(Array.from({ length: Math.floor(r(0, 4)) }, (_, i) => [`k${i}${chars[Math.floor(r(0, chars.length))]}`, randomJson(r, depth + 1)]));
  }
}
function withWhitespace(text: string, r: (lo?: number, hi?: number) => number): string {
  // Between tokens only: after structural characters outside strings.
  let out = '', inString = false, escaped = false;
  for (const ch of text) {
    out += ch;
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === '\\') escaped = true;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') inString = true;
    else if ('{}[],:'.includes(ch) && r() > 0.5) out += ['', ' ', '\n  ', '\t', '\r\n'][Math.floor(r(0, 5))];
  }
  return out;
}

const corpus = (() => {
  const r = rng(7);
  const out = [...VALID];
  for (let i = 0; i < 500; i++) out.push(withWhitespace(JSON.stringify(randomJson(r)), r).trimEnd());
  return out;
})();

describe('JsonAcceptor against JSON.parse', () => {
  it('the hand-picked valid texts are valid (the premise of the other tests)', () => {
    for (const s of VALID) expect(parses(utf8.encode(s)), s).toBe(true);
    for (const s of INVALID) expect(parses(utf8.encode(s)), s).toBe(false);
  });

  it('every byte prefix of a valid text is accepted, and complete exactly when it parses (UTF-8 split anywhere)', () => {
    let prefixes = 0;
    for (const s of corpus) {
      const bytes = utf8.encode(s);
      const a = new JsonAcceptor(true);
      for (let i = 0; i < bytes.length; i++) {
        expect(a.pushByte(bytes[i]), `${JSON.stringify(s)}: byte ${i} refused`).toBe(true);
        expect(a.complete, `${JSON.stringify(s)}: prefix of ${i + 1} bytes`).toBe(parses(bytes.subarray(0, i + 1)));
        prefixes++;
      }
      expect(a.complete).toBe(true);
    }
    expect(prefixes).toBeGreaterThan(5000);
  });

  it('invalid texts are never complete', () => {
    for (const s of INVALID) {
      const { taken, complete } = run(utf8.encode(s));
      expect(taken === utf8.encode(s).length && complete, s).toBe(false);
    }
  });

  it('mutated texts: complete exactly when JSON.parse takes them; a refused byte leaves no completion that parses', () => {
    const r = rng(11);
    const bytesOf = (s: string) => Array.from(utf8.encode(s));
    const alphabet = bytesOf('{}[]":,.-+eE0123456789tfnul\\ \n"x').concat([0x01, 0x7f, 0x80, 0xbf, 0xc0, 0xc3, 0xe0, 0xed, 0xf0, 0xf4, 0xf5, 0xff]);
    // What could follow a prefix to make it valid, for the check that a refusal is final.
    const suffixes = ['', '"', '}', ']', '0', '"}', '"]', '0}', '0]', ':0}', '":0}', 'e', 'ue', 'lse', 'ull', '"]}', '}]', ']}', '0"}', '\\n"}', 'A"}']
      .map((x) => utf8.encode(x));
    let refused = 0, completeCount = 0;
    for (let trial = 0; trial < 4000; trial++) {
      const b = bytesOf(corpus[Math.floor(r(0, corpus.length))]);
      for (let m = 0; m < 1 + Math.floor(r(0, 3)); m++) {
        const at = Math.floor(r(0, b.length + 1));
        const kind = Math.floor(r(0, 3));
        const byte = alphabet[Math.floor(r(0, alphabet.length))];
        if (kind === 0) b.splice(at, 0, byte);
        else if (kind === 1) b.splice(at, 1);
        else b[Math.min(at, b.length - 1)] = byte;
      }
      const bytes = Uint8Array.from(b);
      const { taken, complete } = run(bytes);
      const ok = taken === bytes.length && complete;
      expect(ok, JSON.stringify(Buffer.from(bytes).toString('latin1'))).toBe(parses(bytes));
      if (ok) completeCount++;
      if (taken < bytes.length) {
        refused++;
        const head = bytes.subarray(0, taken + 1);
        for (const s of suffixes) {
          const all = new Uint8Array(head.length + s.length);
          all.set(head);
          all.set(s, head.length);
          expect(parses(all), `refused at byte ${taken} of ${JSON.stringify(Buffer.from(bytes).toString('latin1'))}`).toBe(false);
        }
      }
    }
    expect(refused).toBeGreaterThan(1000);
    expect(completeCount).toBeGreaterThan(200);
  });

  it('JSON mode takes an object at the top only', () => {
    expect(run(utf8.encode('{"a": [1]}'), false)).toEqual({ taken: 10, complete: true });
    expect(run(utf8.encode(' \n{}'), false).taken).toBe(0); // it starts the answer, as in llama.cpp's json grammar
    for (const s of ['[]', '"a"', '1', 'true', 'null']) expect(run(utf8.encode(s), false).taken, s).toBe(0);
    // Nothing after the object, not even whitespace: the generation ends there.
    expect(run(utf8.encode('{} '), false).taken).toBe(2);
  });

  it(`whitespace runs of at most ${MAX_JSON_WHITESPACE} bytes between tokens; any run inside strings`, () => {
    const ws = (n: number) => ' '.repeat(n);
    expect(run(utf8.encode(`{${ws(MAX_JSON_WHITESPACE)}"a"${ws(MAX_JSON_WHITESPACE)}:${ws(MAX_JSON_WHITESPACE)}1${ws(MAX_JSON_WHITESPACE)}}`), false).complete).toBe(true);
    expect(run(utf8.encode(`{\n${ws(MAX_JSON_WHITESPACE)}"a":1}`), false).taken).toBe(1 + MAX_JSON_WHITESPACE);
    expect(run(utf8.encode(`{"a":[1,${'\n'.repeat(MAX_JSON_WHITESPACE + 1)}2]}`), false).taken).toBe(8 + MAX_JSON_WHITESPACE);
    expect(run(utf8.encode(`{"a":"${ws(100)}"}`), false).complete).toBe(true);
  });

  it(`nesting of at most ${MAX_JSON_DEPTH} levels`, () => {
    const nest = (n: number) => '{"a":'.repeat(n - 1) + '{}' + '}'.repeat(n - 1);
    expect(run(utf8.encode(nest(MAX_JSON_DEPTH)), false).complete).toBe(true);
    expect(run(utf8.encode('['.repeat(MAX_JSON_DEPTH) + ']'.repeat(MAX_JSON_DEPTH))).complete).toBe(true);
    expect(run(utf8.encode(nest(MAX_JSON_DEPTH + 1)), false).taken).toBe(5 * MAX_JSON_DEPTH);
    expect(run(utf8.encode('['.repeat(MAX_JSON_DEPTH + 1))).taken).toBe(MAX_JSON_DEPTH);
  });

  it('UTF-8 in strings: well-formed sequences only (no overlongs, surrogates, past U+10FFFF, stray or missing continuation bytes)', () => {
    const str = (...b: number[]) => Uint8Array.of(0x22, ...b, 0x22);
    for (const good of [[0xc2, 0x80], [0xdf, 0xbf], [0xe0, 0xa0, 0x80], [0xed, 0x9f, 0xbf], [0xee, 0x80, 0x80], [0xf0, 0x90, 0x80, 0x80], [0xf4, 0x8f, 0xbf, 0xbf]]) {
      expect(run(str(...good)).complete, good.join(' ')).toBe(true);
      expect(parses(str(...good))).toBe(true);
    }
    for (const bad of [[0x80], [0xc0, 0x80], [0xc1, 0xbf], [0xc2], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xe1, 0x80], [0xf0, 0x80, 0x80, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf5, 0x80, 0x80, 0x80], [0xff]]) {
      expect(run(str(...bad)).complete, bad.join(' ')).toBe(false);
      expect(parses(str(...bad))).toBe(false);
    }
  });

  it('a clone advances on its own', () => {
    const a = new JsonAcceptor();
    expect(a.push(utf8.encode('{"a": tr'))).toBe(true);
    const b = a.clone();
    expect(b.push(utf8.encode('ue}'))).toBe(true);
    expect(b.complete).toBe(true);
    expect(a.complete).toBe(false);
    expect(a.push(utf8.encode('ux'))).toBe(false);
  });
});
