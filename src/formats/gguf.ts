// Reader of llama.cpp's GGUF format (versions 2 and 3; https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
//
//   "GGUF", u32 version, u64 tensor count, u64 metadata count
//   metadata:  key (u64 length + UTF-8), u32 value type, value   (strings: u64 length + bytes;
//              arrays: u32 element type, u64 count, elements)
//   tensors:   name, u32 dims, u64 ne[dims] (ne0 = the fastest-varying: a row's length),
//              u32 ggml type, u64 offset (from the data section, a multiple of the alignment)
//   padding to general.alignment (default 32), then the data section.
//
// It reads through a ByteFile in windows, so only the header is ever held. Every count and length
// is checked against the bytes left before anything is allocated for it: a lying count fails on
// the spot, never after a huge allocation or a read past the end. Every defect is
// BAD_CHECKPOINT naming the file and what is wrong.
import { MlaError } from '../errors.js';
import { ggmlType } from './ggml-types.js';
import type { ByteFile } from './byte-file.js';

export type GgufValue = number | bigint | boolean | string | GgufValue[] | ArrayLike<number>;

export interface GgufTensorInfo {
  name: string;
  /** ggml's ne: ne[0] is a row's length (the reverse of a PyTorch shape). */
  ne: number[];
  /** The ggml type's name ('F32', 'Q8_0', …). */
  type: string;
  /** Absolute byte offset of the data, and its length. */
  begin: number;
  bytes: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: Map<string, GgufTensorInfo>;
  alignment: number;
  dataStart: number;
}

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const WINDOW = 1 << 20;
const MAX_DIMS = 4;     // GGML_MAX_DIMS
const MAX_NESTING = 4;  // arrays of arrays of …: no model needs more
// Smallest encodings, used to bound counts by the bytes left: a key-value (empty key, a u8
// value), a tensor info (empty name, one dimension), a string, an array header.
const MIN_KV = 8 + 4 + 1, MIN_TENSOR = 8 + 4 + 8 + 4 + 8, MIN_STRING = 8, MIN_ARRAY = 4 + 8;

/** Bytes of one element of the scalar value types (0–7, 10–12). */
const SCALAR_BYTES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
const STRING = 8, ARRAY = 9;

/** Reads a file front to back through a window of its bytes. */
class Cursor {
  pos = 0;
  private buf = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  private bufStart = 0;
  constructor(private readonly file: ByteFile, private readonly bad: (msg: string) => MlaError) {}

  get left(): number { return this.file.size - this.pos; }

  /** Make bytes [pos, pos + n) readable from the window; returns their offset in it. */
  private need(n: number, what: string): number {
    if (n > this.left) throw this.bad(`${what} at byte ${this.pos} needs ${n} bytes, but the file ends ${this.left} bytes later`);
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.buf.length) {
      this.buf = new Uint8Array(Math.min(Math.max(n, WINDOW), this.left));
      this.file.read(this.pos, this.buf);
      this.view = new DataView(this.buf.buffer);
      this.bufStart = this.pos;
    }
    const at = this.pos - this.bufStart;
    this.pos += n;
    return at;
  }

  u32(what: string): number {
    const at = this.need(4, what); // before this.view: need() may replace the window
    return this.view.getUint32(at, true);
  }

  /** A u64 that must be a safe integer (every count, length and offset is). */
  u64(what: string): number {
    const at = this.need(8, what);
    const lo = this.view.getUint32(at, true), hi = this.view.getUint32(at + 4, true);
    if (hi >= 0x200000) throw this.bad(`${what} is ${(BigInt(hi) << 32n) + BigInt(lo)}, too large to be real`);
    return hi * 2 ** 32 + lo;
  }

  bytes(n: number, what: string): Uint8Array {
    const at = this.need(n, what);
    return this.buf.subarray(at, at + n);
  }

  string(what: string, strict: boolean): string {
    const n = this.u64(`${what}'s length`);
    const raw = this.bytes(n, what);
    try {
      return new TextDecoder('utf-8', { fatal: strict }).decode(raw);
    } catch {
      throw this.bad(`${what} is not valid UTF-8`);
    }
  }

  scalar(type: number, what: string): number | bigint | boolean {
    const at = this.need(SCALAR_BYTES[type], what);
    const v = this.view;
    switch (type) {
      case 0: return v.getUint8(at);
      case 1: return v.getInt8(at);
      case 2: return v.getUint16(at, true);
      case 3: return v.getInt16(at, true);
      case 4: return v.getUint32(at, true);
      case 5: return v.getInt32(at, true);
      case 6: return v.getFloat32(at, true);
      case 7: {
        const b = v.getUint8(at);
        if (b > 1) throw this.bad(`${what} is a bool of value ${b}`);
        return b === 1;
      }
      case 10: return small(v.getBigUint64(at, true));
      case 11: return small(v.getBigInt64(at, true));
      default: return v.getFloat64(at, true);
    }
  }
}

/** A 64-bit integer as a number when it is exact as one. */
function small(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

type NumberArray = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | Float32Array | Float64Array;

function typedArray(type: number, n: number): { array: NumberArray } | null {
  switch (type) {
    case 0: return { array: new Uint8Array(n) };
    case 1: return { array: new Int8Array(n) };
    case 2: return { array: new Uint16Array(n) };
    case 3: return { array: new Int16Array(n) };
    case 4: return { array: new Uint32Array(n) };
    case 5: return { array: new Int32Array(n) };
    case 6: return { array: new Float32Array(n) };
    case 12: return { array: new Float64Array(n) };
    default: return null;
  }
}

function readValue(c: Cursor, type: number, what: string, depth: number, bad: (m: string) => MlaError): GgufValue {
  if (type in SCALAR_BYTES) return c.scalar(type, what);
  if (type === STRING) return c.string(what, false);
  if (type !== ARRAY) throw bad(`${what} has value type ${type}, which GGUF does not define`);
  if (depth >= MAX_NESTING) throw bad(`${what} nests arrays more than ${MAX_NESTING} deep`);
  const elem = c.u32(`${what}'s element type`);
  const n = c.u64(`${what}'s length`);
  const size = SCALAR_BYTES[elem] ?? (elem === STRING ? MIN_STRING : elem === ARRAY ? MIN_ARRAY : 0);
  if (!size) throw bad(`${what} is an array of value type ${elem}, which GGUF does not define`);
  // Checked before anything is allocated: n elements need at least n·size bytes.
  if (n * size > c.left) throw bad(`${what} claims ${n} elements, more than the ${c.left} bytes left in the file hold`);
  const typed = typedArray(elem, n);
  if (typed) {
    const raw = c.bytes(n * size, what);
    // Copy (the window is reused) through an aligned buffer; GGUF is little-endian like every host here.
    new Uint8Array(typed.array.buffer).set(raw);
    return typed.array;
  }
  const out: GgufValue[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = readValue(c, elem, `${what}[${i}]`, depth + 1, bad);
  return out;
}

/** Parse and check a GGUF file's header, metadata and tensor infos (no tensor data is read). */
export function parseGguf(file: ByteFile): GgufFile {
  const bad = (msg: string) => new MlaError('BAD_CHECKPOINT', `${file.name}: ${msg}`);
  const c = new Cursor(file, bad);
  if (file.size < 24) throw bad(`${file.size} bytes is too short for a GGUF header`);
  if (c.u32('the magic') !== MAGIC) throw bad('does not start with "GGUF": not a GGUF file');
  const version = c.u32('the version');
  if (version !== 2 && version !== 3) {
    throw bad(`GGUF version ${version} is not read (only 2 and 3${version === 1 ? '; version 1 is obsolete, convert it again' : ''})`);
  }
  const tensorCount = c.u64('the tensor count');
  const kvCount = c.u64('the metadata count');
  if (kvCount * MIN_KV + tensorCount * MIN_TENSOR > c.left) {
    throw bad(`claims ${tensorCount} tensors and ${kvCount} metadata entries, more than its ${file.size} bytes can hold`);
  }

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata key ${i}`, true);
    if (metadata.has(key)) throw bad(`metadata key "${key}" appears twice`);
    const type = c.u32(`the value type of "${key}"`);
    metadata.set(key, readValue(c, type, `metadata "${key}"`, 0, bad));
  }

  let alignment = 32;
  const a = metadata.get('general.alignment');
  if (a !== undefined) {
    if (typeof a !== 'number' || !Number.isInteger(a) || a < 1 || (a & (a - 1)) !== 0 || a > 1 << 30) {
      throw bad(`general.alignment ${String(a)} is not a power of two`);
    }
    alignment = a;
  }

  const infos: GgufTensorInfo[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`tensor ${i}'s name`, true);
    if (seen.has(name)) throw bad(`tensor "${name}" appears twice`);
    seen.add(name);
    const dims = c.u32(`tensor "${name}"'s dimension count`);
    if (dims < 1 || dims > MAX_DIMS) throw bad(`tensor "${name}" has ${dims} dimensions (1 to ${MAX_DIMS} allowed)`);
    const ne: number[] = [];
    let count = 1;
    for (let d = 0; d < dims; d++) {
      const n = c.u64(`tensor "${name}"'s dimension ${d}`);
      ne.push(n);
      count *= n;
      // No ggml type packs more than 8 values in a byte: this bounds the product long before it is inexact.
      if (count > file.size * 8) throw bad(`tensor "${name}" has shape [${ne}…], more elements than the file could hold`);
    }
    const typeId = c.u32(`tensor "${name}"'s type`);
    const t = ggmlType(typeId);
    if (!t) throw bad(`tensor "${name}" has ggml type ${typeId}, which is unknown`);
    if (ne[0] % t.block) throw bad(`tensor "${name}" is ${t.name} with rows of ${ne[0]} values, not a multiple of its ${t.block}-value blocks`);
    const offset = c.u64(`tensor "${name}"'s offset`);
    if (offset % alignment) throw bad(`tensor "${name}"'s data offset ${offset} is not a multiple of the alignment ${alignment}`);
    infos.push({ name, ne, type: t.name, begin: offset, bytes: (count / t.block) * t.bytes });
  }

  const dataStart = Math.ceil(c.pos / alignment) * alignment;
  if (dataStart > file.size) throw bad(`the data section would start at byte ${dataStart}, past the end of the file (${file.size} bytes)`);
  const tensors = new Map<string, GgufTensorInfo>();
  for (const info of infos) {
    info.begin += dataStart;
    if (info.begin + info.bytes > file.size) {
      throw bad(`tensor "${info.name}" (${info.type} [${info.ne}]) has data [${info.begin}, ${info.begin + info.bytes}) past the end of the file (${file.size} bytes): truncated?`);
    }
    tensors.set(info.name, info);
  }
  const sorted = infos.filter((t) => t.bytes > 0).sort((x, y) => x.begin - y.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].begin + sorted[i - 1].bytes) {
      throw bad(`tensors "${sorted[i - 1].name}" and "${sorted[i].name}" overlap in the file`);
    }
  }
  return { version, metadata, tensors, alignment, dataStart };
}

/** Whether the bytes start like a GGUF file. */
export function looksLikeGguf(first4: Uint8Array): boolean {
  return first4.length >= 4 && first4[0] === 0x47 && first4[1] === 0x47 && first4[2] === 0x55 && first4[3] === 0x46;
}
