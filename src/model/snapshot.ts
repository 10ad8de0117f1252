// A session as bytes, to carry a conversation to another process, runtime or request:
//   "MLAS" | u32 version | u32 header length | header (JSON, space-padded so the rows start on a
//   4-byte boundary) | cache rows | u32 checksum of all before
// The checksum folds the words before the rows, then each layer's rows through their digest
// (host/digest.ts: WebAssembly SIMD over the cache itself, where version 1's JavaScript loop over
// every word was most of a restore's time): any one altered word changes it.
// The header holds a fingerprint of the model (its config and a sample of its weights), the cache
// format, the cache's shape, the position, the capacity and the token ids; the rows are those in
// use, layer after layer, as the cache stores them (little-endian, as WebAssembly's memory is).
// Reading checks everything but the checksum before a session is made; the checksum is checked on
// the rows once copied into the new session's cache (which is then freed if it does not match).
// A snapshot of another model, another cache format, another version, or one truncated or altered
// is BAD_SNAPSHOT naming what is wrong.
//
// Cache formats: the rows are kept as the session's cache stores them (f32, bf16, int8, int4; the
// header names it), so a restored session has the same format; asking restore for another is
// BAD_SNAPSHOT. An f32 snapshot is the same bytes as before the narrow formats existed.
import { MlaError } from '../errors.js';
import type { ModelConfig } from '../formats/config.js';
import type { Heap } from '../host/heap.js';
import type { MemoryDigest } from '../host/digest.js';
import { CACHE_FORMATS, KvCache, type CacheFormat } from './kv-cache.js';
import type { Weights } from './weights.js';

// 3: int8/int4 cache rows hold the sum of their codes after the scale (assembly/latent.ts).
// 4: the config (in the fingerprint) gained ropeFreqFactors: a version-3 snapshot would otherwise
// be refused as another model's.
export const SNAPSHOT_VERSION = 4;
const MAGIC = [0x4d, 0x4c, 0x41, 0x53]; // "MLAS"

export interface SnapshotHeader {
  fingerprint: string;
  cacheFormat: CacheFormat;
  layers: number;
  rowNumbers: number;
  position: number;
  capacity: number;
  ids: number[];
}

const fingerprints = new WeakMap<Weights, string>();

/**
 * What identifies a model: its config, and its weights sampled at 4096 places (hashing every byte
 * of gigabytes would take seconds; a different checkpoint differs nearly everywhere). Computed once.
 */
export function modelFingerprint(config: ModelConfig, w: Weights, heap: Heap): string {
  const known = fingerprints.get(w);
  if (known) return known;
  const h = new Fnv();
  h.bytes(new TextEncoder().encode(JSON.stringify(config)));
  const size = w.blockBytes;
  const WINDOW = 64, SAMPLES = 4096;
  if (size <= WINDOW * SAMPLES) h.bytes(heap.u8(w.block, size));
  else for (let i = 0; i < SAMPLES; i++) h.bytes(heap.u8(w.block + Math.floor((i * (size - WINDOW)) / (SAMPLES - 1)), WINDOW));
  const fp = h.hex();
  fingerprints.set(w, fp);
  return fp;
}

/** A snapshot read and checked, but for its checksum (checkRows, once the rows are in a cache). */
export interface ReadSnapshot {
  header: SnapshotHeader;
  /** The bytes before the rows: magic, version, header. */
  head: Uint8Array;
  rows: Uint8Array;
  checksum: number;
}

/** The bytes of a session: its header and the first `ids.length` rows of every layer of `cache`. */
export function writeSnapshot(fingerprint: string, cache: KvCache, ids: number[], digest: MemoryDigest): Uint8Array {
  const header: SnapshotHeader = {
    fingerprint, cacheFormat: cache.format, layers: cache.layers, rowNumbers: cache.row, position: ids.length, capacity: cache.capacity, ids,
  };
  const text = JSON.stringify(header);
  const json = new TextEncoder().encode(text + ' '.repeat((4 - ((12 + new TextEncoder().encode(text).length) % 4)) % 4));
  const perLayer = ids.length * cache.rowBytes, rowsBytes = cache.layers * perLayer;
  const out = new Uint8Array(12 + json.length + rowsBytes + 4);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  view.setUint32(4, SNAPSHOT_VERSION, true);
  view.setUint32(8, json.length, true);
  out.set(json, 12);
  let at = 12 + json.length;
  for (let l = 0; l < cache.layers; l++) {
    out.set(cache.bytesView().subarray(cache.at(l, 0) - cache.ptr, cache.at(l, 0) - cache.ptr + perLayer), at);
    at += perLayer;
  }
  view.setUint32(at, rowsChecksum(out.subarray(0, 12 + json.length), cache, ids.length, digest), true);
  return out;
}

/** The checksum of a snapshot whose head is `head` and whose rows are the first `position` of `cache`. */
function rowsChecksum(head: Uint8Array, cache: KvCache, position: number, digest: MemoryDigest): number {
  const perLayer = position * cache.rowBytes;
  return foldChecksum(head, Array.from({ length: cache.layers }, (_, l) => digest(cache.at(l, 0), perLayer)));
}

/** BAD_SNAPSHOT unless the rows `read` put into `cache` (and its head) give its checksum. */
export function checkRows(read: ReadSnapshot, cache: KvCache, digest: MemoryDigest): void {
  if (rowsChecksum(read.head, cache, read.header.position, digest) !== read.checksum) bad('its checksum does not match: the bytes were altered');
}

const bad = (why: string): never => { throw new MlaError('BAD_SNAPSHOT', `cannot restore this snapshot: ${why}`); };

/**
 * Check a snapshot against the model that would restore it, all but its checksum (checkRows does
 * that on the restored rows); returns its header and its parts. Throws BAD_SNAPSHOT (or BAD_INPUT
 * for what is not bytes) and allocates nothing.
 */
export function readSnapshot(bytes: unknown, config: ModelConfig, fingerprint: string, want?: CacheFormat): ReadSnapshot {
  if (!(bytes instanceof Uint8Array)) throw new MlaError('BAD_INPUT', 'restoreSession takes the Uint8Array session.snapshot() made');
  if (bytes.length < 16 || MAGIC.some((b, i) => bytes[i] !== b)) bad('it does not start like a snapshot (too short, or not one)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(4, true);
  if (version > SNAPSHOT_VERSION) bad(`it is version ${version}, newer than this library reads (${SNAPSHOT_VERSION}): update mla-wasm`);
  if (version !== SNAPSHOT_VERSION) {
    bad(`it is version ${version}, an older format this library no longer reads (it reads ${SNAPSHOT_VERSION}): take the snapshot again with this version`);
  }
  const jsonLength = view.getUint32(8, true);
  if (12 + jsonLength + 4 > bytes.length) bad(`it is truncated (${bytes.length} bytes, the header alone needs ${12 + jsonLength + 4})`);
  if ((12 + jsonLength) % 4 !== 0) bad('its header is corrupt');
  let header: SnapshotHeader;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(12, 12 + jsonLength)));
  } catch {
    return bad('its header is corrupt');
  }
  const int = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  if (typeof header !== 'object' || header === null || typeof header.fingerprint !== 'string' || typeof header.cacheFormat !== 'string' ||
    !int(header.layers) || !int(header.rowNumbers) || !int(header.position) || !int(header.capacity) || !Array.isArray(header.ids)) {
    bad('its header is corrupt');
  }
  if (!CACHE_FORMATS.includes(header.cacheFormat) || (header.cacheFormat !== 'f32' && config.attention.kind !== 'mla')) {
    bad(`its cache format '${header.cacheFormat}' is not one this model's sessions can hold`);
  }
  const rowBytes = header.cacheFormat === 'f32' ? header.rowNumbers * 4 : KvCache.rowBytesOf(config.attention, header.cacheFormat);
  const rowsBytes = header.position * header.layers * rowBytes;
  const total = 12 + jsonLength + rowsBytes + 4;
  if (bytes.length < total) bad(`it is truncated (${bytes.length} of ${total} bytes)`);
  if (bytes.length > total) bad(`it has ${bytes.length - total} bytes after its end`);
  if (header.fingerprint !== fingerprint) bad(`it was taken with another model (fingerprint ${header.fingerprint}, this model's is ${fingerprint})`);
  if (want !== undefined && header.cacheFormat !== want) bad(`its cache format is '${header.cacheFormat}', not the '${want}' asked for`);
  const row = KvCache.rowNumbers(config.attention);
  if (header.layers !== config.layers || header.rowNumbers !== row) {
    bad(`its cache has ${header.layers} layers of ${header.rowNumbers} numbers, this model's ${config.layers} of ${row}`);
  }
  if (header.capacity < 1 || header.capacity > config.maxPositions || header.position > header.capacity) {
    bad(`position ${header.position} in a capacity of ${header.capacity} does not fit this model's ${config.maxPositions} positions`);
  }
  if (header.ids.length !== header.position || !header.ids.every((id) => Number.isInteger(id) && id >= 0 && id < config.vocabSize)) {
    bad(`its token ids are not ${header.position} ids in [0, ${config.vocabSize})`);
  }
  return { header, head: bytes.subarray(0, 12 + jsonLength), rows: bytes.subarray(12 + jsonLength, total - 4), checksum: view.getUint32(total - 4, true) };
}

/** 64 bits of FNV-1a, as two 32-bit lanes with different offsets. */
class Fnv {
  private a = 0x811c9dc5;
  private b = 0x050c5d1f;
  bytes(x: Uint8Array): void {
    let a = this.a, b = this.b;
    for (let i = 0; i < x.length; i++) {
      a = Math.imul(a ^ x[i], 0x01000193);
      b = Math.imul(b ^ x[i], 0x01000193) ^ (a >>> 15);
    }
    this.a = a;
    this.b = b;
  }
  hex(): string {
    return (this.a >>> 0).toString(16).padStart(8, '0') + (this.b >>> 0).toString(16).padStart(8, '0');
  }
}

/**
 * A snapshot's checksum from its head (a multiple of 4 bytes, read as little-endian words) and the
 * digests of its layers' rows, each folded in by a bijection of the state: one changed word, or
 * one changed digest, always changes it.
 */
export function foldChecksum(head: Uint8Array, layerDigests: readonly number[]): number {
  const words = new DataView(head.buffer, head.byteOffset, head.byteLength);
  let h = 0x811c9dc5 ^ head.length;
  const fold = (x: number) => {
    h = Math.imul(h ^ x, 0x9e3779b1);
    h ^= h >>> 15;
  };
  for (let i = 0; i + 4 <= head.length; i += 4) fold(words.getUint32(i, true));
  layerDigests.forEach(fold);
  return h >>> 0;
}
