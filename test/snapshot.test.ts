// Session snapshots: restored, a session gives the next logits of the one it was taken from, bit for
// bit, and goes on like it; every kind of wrong snapshot is BAD_SNAPSHOT naming what is wrong, and
// leaves nothing allocated. The memory digest the checksum uses agrees with its definition.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadModel, MlaError, type Model } from '../src/index.js';
import { digestBytes, memoryDigest } from '../src/host/digest.js';
import { Heap } from '../src/host/heap.js';
import { foldChecksum } from '../src/model/snapshot.js';

let model: Model;
let other: Model;
beforeAll(async () => {
  model = await loadModel();
  other = await loadModel(new URL('../models/fortune-gqa/', import.meta.url).pathname);
});
afterAll(() => {
  model?.dispose();
  other?.dispose();
});

const ids = (text: string) => model.tokenizer!.encode(text);
const HEADER_AT = 12;

function expectBad(f: () => unknown, mention: string): void {
  const before = model.memoryBytes;
  let err: unknown;
  try { f(); } catch (e) { err = e; }
  expect(err, `expected BAD_SNAPSHOT about ${mention}`).toBeInstanceOf(MlaError);
  expect((err as MlaError).code, (err as Error).message).toBe('BAD_SNAPSHOT');
  expect((err as Error).message).toContain(mention);
  expect(model.memoryBytes).toBe(before); // no session half-made
}

/** The checksum a snapshot's last 4 bytes should hold, from its bytes alone. */
function snapshotChecksum(bytes: Uint8Array): number {
  const headLength = HEADER_AT + new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  const layers = JSON.parse(new TextDecoder().decode(bytes.subarray(HEADER_AT, headLength))).layers;
  const rows = bytes.subarray(headLength, bytes.length - 4), perLayer = rows.length / layers;
  return foldChecksum(bytes.subarray(0, headLength), Array.from({ length: layers }, (_, l) => digestBytes(rows.subarray(l * perLayer, (l + 1) * perLayer))));
}

/** A snapshot with its JSON header changed by `edit` and its checksum made right again. */
function withHeader(bytes: Uint8Array, edit: (h: Record<string, unknown>) => void, version?: number): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const length = view.getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(HEADER_AT, HEADER_AT + length)));
  edit(header);
  let json = new TextEncoder().encode(JSON.stringify(header));
  json = new TextEncoder().encode(JSON.stringify(header) + ' '.repeat((4 - ((HEADER_AT + json.length) % 4)) % 4));
  const rows = bytes.subarray(HEADER_AT + length, bytes.length - 4);
  const out = new Uint8Array(HEADER_AT + json.length + rows.length + 4);
  out.set(bytes.subarray(0, 8));
  const v = new DataView(out.buffer);
  if (version !== undefined) v.setUint32(4, version, true);
  v.setUint32(8, json.length, true);
  out.set(json, HEADER_AT);
  out.set(rows, HEADER_AT + json.length);
  v.setUint32(out.length - 4, snapshotChecksum(out), true);
  return out;
}

describe('memory digest', () => {
  afterEach(() => { vi.restoreAllMocks(); });
  // SIMD over a plain and a shared memory, and the JavaScript one an edge platform (no compiling at run time) gets.
  it.each(['plain', 'shared', 'no compiling'])('%s: the definition\'s value at awkward lengths and offsets; any one changed word changes it', (kind) => {
    const heap = new Heap(1 << 20, { shared: kind === 'shared' });
    if (kind === 'no compiling') {
      vi.spyOn(WebAssembly, 'Module').mockImplementation(function () { throw new WebAssembly.CompileError('refused by the embedder'); });
    }
    const digest = memoryDigest(heap);
    const ptr = heap.alloc(4096);
    const bytes = heap.u8(ptr, 4096);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
    for (const [at, n] of [[0, 0], [4, 4], [0, 60], [8, 64], [12, 68], [4, 1020], [0, 4096]]) {
      expect(digest(ptr + at, n), `${n} bytes at ${at}`).toBe(digestBytes(bytes.slice(at, at + n)));
    }
    // Every word of a length with whole blocks and a tail: flipping one bit anywhere changes the digest.
    const n = 64 * 3 + 12, base = digest(ptr, n);
    for (let i = 0; i < n; i += 4) {
      bytes[i + (i % 3)] ^= 0x10;
      expect(digest(ptr, n), `word ${i / 4}`).not.toBe(base);
      bytes[i + (i % 3)] ^= 0x10;
    }
    expect(digest(ptr, n)).toBe(base);
  });
});

describe('snapshot and restore with a narrow cache', () => {
  it.each(['bf16', 'int8', 'int4'] as const)('%s: rows kept as stored, restored in that format, the same next logits bit for bit', (cache) => {
    const s = model.createSession({ contextLength: 100, cache });
    s.prefill(ids('Q: Why is the sky blue?\nA:'));
    s.step(32);
    const bytes = s.snapshot();
    // The rows in the cache's own format: fewer bytes than f32's.
    expect(bytes.length).toBeGreaterThan(s.kvCacheBytes);
    expect(bytes.length).toBeLessThan(s.kvCacheBytes + 2048);
    const r = model.restoreSession(bytes);
    expect(r.cacheFormat).toBe(cache);
    expect(r.position).toBe(s.position);
    for (const id of [7, 99, 3]) expect(Array.from(r.step(id))).toEqual(Array.from(s.step(id)));
    expectBad(() => model.restoreSession(bytes, { cache: 'f32' }), `cache format is '${cache}', not the 'f32' asked for`);
    // A header claiming a wider format than its rows: they are too few.
    expectBad(() => model.restoreSession(withHeader(bytes, (h) => { h.cacheFormat = cache === 'bf16' ? 'f32' : 'bf16'; })), 'truncated');
    r.dispose();
    s.dispose();
  });
});

describe('snapshot and restore', () => {
  it('the restored session gives the same next logits bit for bit, and goes on identically', () => {
    const s = model.createSession({ contextLength: 100 });
    s.prefill(ids('Q: Why is the sky blue?\nA:'));
    s.step(32);
    const bytes = s.snapshot();
    // Header, the rows in use (not the whole capacity), the checksum.
    const rowBytes = model.kvCacheBytesPerToken * s.position;
    expect(bytes.length).toBeGreaterThan(rowBytes);
    expect(bytes.length).toBeLessThan(rowBytes + 1024);
    const r = model.restoreSession(bytes);
    expect(r.position).toBe(s.position);
    expect(r.capacity).toBe(100);
    for (const id of [84, 104, 101]) expect(r.step(id)).toEqual(s.step(id));
    // A snapshot of the restored session is the same bytes as one of the original at the same point.
    expect(r.snapshot()).toEqual(s.snapshot());
    s.dispose();
    r.dispose();
  });

  it('an empty session and one rewound by truncate round-trip too', () => {
    const s = model.createSession({ contextLength: 40 });
    const empty = model.restoreSession(s.snapshot());
    expect(empty.position).toBe(0);
    s.prefill(ids('Q: Hi\nA: Hello'));
    s.truncate(4);
    const r = model.restoreSession(s.snapshot());
    expect(r.position).toBe(4);
    expect(r.step(65)).toEqual(s.step(65));
    for (const x of [s, empty, r]) x.dispose();
  });

  it('refuses another model, a truncated or altered snapshot, a future version, another cache format', () => {
    const s = model.createSession({ contextLength: 64 });
    s.prefill(ids('Q: What?\nA:'));
    const bytes = s.snapshot();
    s.dispose();
    const o = other.createSession({ contextLength: 64 });
    o.prefill(other.tokenizer!.encode('Q: What?\nA:'));
    const theirs = o.snapshot();
    o.dispose();
    expectBad(() => model.restoreSession(theirs), 'another model');
    expectBad(() => model.restoreSession(bytes.subarray(0, bytes.length - 100)), 'truncated');
    expectBad(() => model.restoreSession(bytes.subarray(0, 10)), 'does not start like a snapshot');
    // A bit flipped in the last layer's rows, in the first's, and a token id changed in the header.
    const rowsAt = HEADER_AT + new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
    for (const at of [bytes.length - 50, rowsAt + 5]) {
      const altered = bytes.slice();
      altered[at] ^= 1;
      expectBad(() => model.restoreSession(altered), 'altered');
    }
    const otherId = withHeader(bytes, (h) => { (h.ids as number[])[3] ^= 1; });
    otherId.set(bytes.subarray(bytes.length - 4), otherId.length - 4);
    expectBad(() => model.restoreSession(otherId), 'altered');
    expectBad(() => model.restoreSession(withHeader(bytes, () => {}, 5)), 'version 5, newer than this library reads (4)');
    expectBad(() => model.restoreSession(withHeader(bytes, () => {}, 3)), 'version 3, an older format this library no longer reads');
    expectBad(() => model.restoreSession(withHeader(bytes, (h) => { h.cacheFormat = 'int3'; })), "cache format 'int3' is not one");
    expectBad(() => model.restoreSession(bytes, { cache: 'int8' }), "cache format is 'f32', not the 'int8' asked for");
    expectBad(() => model.restoreSession(withHeader(bytes, (h) => { h.ids = (h.ids as number[]).slice(1); })), 'token ids');
    expectBad(() => model.restoreSession(withHeader(bytes, (h) => { h.capacity = 10_000; })), 'does not fit');
    expect(() => model.restoreSession('bytes' as unknown as Uint8Array)).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
    // The original still restores after all that.
    model.restoreSession(bytes).dispose();
  });

  it('a session whose rows came from skipTo has no ids to save: BAD_INPUT', () => {
    const s = model.createSession({ contextLength: 16 });
    s.skipTo(5);
    expect(() => s.snapshot()).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
    s.dispose();
  });
});
