// Reader of the safetensors format (https://github.com/huggingface/safetensors):
//
//   [8 bytes]  N, the header length, unsigned 64-bit little-endian
//   [N bytes]  a JSON object  { name: { dtype, shape, data_offsets: [begin, end] }, …,
//                               "__metadata__"?: { key: string value } }
//   [rest]     the raw tensor data, little-endian, row-major; data_offsets are relative to
//              the first byte after the header.
//
// It gets bytes (no fs, no process), checks every claim the header makes against the file,
// and never reads outside `bytes`. Every defect is an MlaError('BAD_CHECKPOINT') whose message
// names the file and the tensor. To stream, parse the header from the file's first 8 + N bytes
// and its size, then read each tensor's byte range with readTensorF32At straight into its
// destination. F16 and BF16 are widened to f32 exactly as they are read.

import { MlaError } from '../errors.js';

/** The dtype names the format uses, with their element size in bytes. */
const DTYPE_BYTES = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
} as const;

export type Dtype = keyof typeof DTYPE_BYTES;

/** Element size of a dtype the format defines, or undefined for a name we do not know. */
export function dtypeBytes(dtype: string): number | undefined {
  return Object.prototype.hasOwnProperty.call(DTYPE_BYTES, dtype) ? DTYPE_BYTES[dtype as Dtype] : undefined;
}

export interface TensorInfo {
  name: string;
  /** As written in the file; may be a name we do not know (then reading it fails). */
  dtype: string;
  shape: number[];
  /** Absolute byte offsets of the tensor's data in the file: [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Absolute offset of the data section (8 + header length). */
  dataStart: number;
  /** Length of the bytes the header was parsed from. */
  fileBytes: number;
}

/** Headers above this size are treated as corrupt (the official reader's limit is also 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

function bad(fileName: string, problem: string): MlaError {
  return new MlaError('BAD_CHECKPOINT', `${fileName}: ${problem}`);
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Number of elements of a shape (1 for a scalar, []; 0 as soon as one dimension is 0). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (d === 0) return 0;
    n *= d;
  }
  return n;
}

/** The dtypes readTensorF32 converts to f32. */
export const READABLE_DTYPES: readonly string[] = ['F32', 'F16', 'BF16'];

/**
 * Validates the first 8 bytes of a safetensors file of `fileSize` bytes and returns the header
 * length they state. `first` must hold at least min(8, fileSize) bytes of the file.
 */
export function safetensorsHeaderLength(first: Uint8Array, fileName: string, fileSize: number): number {
  if (fileSize < 8) {
    throw bad(fileName, `file is ${fileSize} bytes, shorter than the 8-byte header length`);
  }
  if (first.length < 8) {
    throw new MlaError('BAD_INPUT', `safetensorsHeaderLength: ${fileName}: needs the file's first 8 bytes, got ${first.length}`);
  }
  const view = new DataView(first.buffer, first.byteOffset, 8);
  const lo = view.getUint32(0, true), hi = view.getUint32(4, true);
  const headerLen = hi * 2 ** 32 + lo;
  if (hi !== 0 || headerLen > MAX_HEADER_BYTES) {
    throw bad(fileName, `header length ${headerLen} is absurd (over ${MAX_HEADER_BYTES} bytes): not a safetensors file or corrupt`);
  }
  if (8 + headerLen > fileSize) {
    throw bad(fileName, `header length ${headerLen} runs past the end of the file (${fileSize} bytes): truncated?`);
  }
  return headerLen;
}

/**
 * Parses and validates the header of a safetensors file. `bytes` is the whole file, or (to stream)
 * only its first 8 + header-length bytes with `fileSize` the length of the whole file: every offset
 * is checked against `fileSize`, and nothing past `bytes` is read.
 */
export function parseSafetensorsHeader(bytes: Uint8Array, fileName = 'model.safetensors', fileSize = bytes.length): SafetensorsHeader {
  const headerLen = safetensorsHeaderLength(bytes, fileName, fileSize);
  const dataStart = 8 + headerLen;
  if (bytes.length < dataStart) {
    throw new MlaError('BAD_INPUT', `parseSafetensorsHeader: ${fileName}: got ${bytes.length} bytes, the header needs the first ${dataStart}`);
  }

  let json: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, dataStart));
    json = JSON.parse(text);
  } catch (e) {
    throw bad(fileName, `header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw bad(fileName, 'header is not a JSON object');
  }

  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
        throw bad(fileName, '__metadata__ is not an object of strings');
      }
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string') throw bad(fileName, `__metadata__ value of "${k}" is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    tensors.set(name, parseEntry(name, entry, dataStart, fileSize, fileName));
  }
  checkNoOverlap(tensors, fileName);
  return { tensors, metadata, dataStart, fileBytes: fileSize };
}
function parseEntry(name: string, entry: unknown, dataStart: number, fileLen: number, fileName: string): TensorInfo {
  const where = `tensor "${name}"`;
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw bad(fileName, `${where}: header entry is not an object`);
  }
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== 'string') throw bad(fileName, `${where}: missing or non-string dtype`);
  if (!Array.isArray(shape)) throw bad(fileName, `${where}: missing shape`);
  for (const d of shape) {
    if (!isNonNegInt(d)) throw bad(fileName, `${where}: shape ${JSON.stringify(shape)} has a dimension that is not a non-negative integer`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !isNonNegInt(offsets[0]) || !isNonNegInt(offsets[1])) {
    throw bad(fileName, `${where}: data_offsets ${JSON.stringify(offsets)} is not two non-negative integers`);
  }
  const [b, e] = offsets as [number, number];
  if (b > e) throw bad(fileName, `${where}: data_offsets [${b}, ${e}] has begin after end`);
  const size = dtypeBytes(dtype);
  // Unknown dtypes are recorded; readTensorF32 rejects them with UNSUPPORTED_DTYPE.
  if (size !== undefined) {
    const want = elementCount(shape as number[]) * size;
    if (want !== e - b) {
      throw bad(fileName, `${where}: ${e - b} data bytes, but ${dtype} ${JSON.stringify(shape)} needs ${want}`);
    }
  }
  if (dataStart + e > fileLen) {
    throw bad(fileName, `${where}: data [${dataStart + b}, ${dataStart + e}) runs past the end of the file (${fileLen} bytes): truncated?`);
  }
  return { name, dtype, shape: (shape as number[]).slice(), begin: dataStart + b, end: dataStart + e };
}

function checkNoOverlap(tensors: Map<string, TensorInfo>, fileName: string): void {
  const ranges = [...tensors.values()].filter((t) => t.end > t.begin).sort((x, y) => x.begin - y.begin);
  for (let i = 1; i < ranges.length; i++) {
    const prev = ranges[i - 1], cur = ranges[i];
    if (cur.begin < prev.end) {
      throw bad(fileName, `tensors "${prev.name}" and "${cur.name}" overlap in the file`);
    }
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Reads `into.length` bytes of a file starting at byte `position` (all of them, or throws). */
export type ReadAt = (position: number, into: Uint8Array) => void;

/**
 * Copies one tensor into `out` as float32, reading its bytes with `readAt` straight into `out`'s
 * own memory: F32 as is, F16 and BF16 into the upper half of `out`'s bytes and then widened in
 * place (exactly: subnormals, ±0, ±Inf and NaN included). No buffer of the tensor's size is made.
 * `out.length` must be the tensor's element count; other dtypes throw UNSUPPORTED_DTYPE.
 */
export function readTensorF32At(readAt: ReadAt, info: TensorInfo, out: Float32Array, fileName = 'model.safetensors'): void {
  const size = READABLE_DTYPES.includes(info.dtype) ? dtypeBytes(info.dtype)! : 0;
  if (!size) {
    throw new MlaError('UNSUPPORTED_DTYPE',
      `${fileName}: tensor "${info.name}" has dtype ${info.dtype}; only ${READABLE_DTYPES.join(', ')} are read`);
  }
  const n = elementCount(info.shape);
  if (out.length !== n) {
    throw new MlaError('BAD_INPUT', `readTensorF32: tensor "${info.name}" has ${n} elements, output buffer has ${out.length}`);
  }
  if (!(isNonNegInt(info.begin) && isNonNegInt(info.end) && info.end - info.begin === size * n)) {
    throw bad(fileName, `tensor "${info.name}": byte range [${info.begin}, ${info.end}) does not hold ${n} ${info.dtype} values`);
  }
  if (n === 0) return;
  // The raw values go to the last size·n bytes of out; widening runs front to back, and element
  // i's source bytes (at 4n − size·(n − i)) are never before its destination (4i), so every
  // source is read before anything overwrites it.
  const tail = new Uint8Array(out.buffer, out.byteOffset + (4 - size) * n, size * n);
  readAt(info.begin, tail);
  widenInPlace(out, info.dtype);
}

/** readTensorF32At over a file held in memory; never reads outside `bytes`. */
export function readTensorF32(bytes: Uint8Array, info: TensorInfo, out: Float32Array, fileName = 'model.safetensors'): void {
  readTensorF32At((position, into) => {
    const end = position + into.length;
    if (!(isNonNegInt(position) && end <= bytes.length)) {
      throw bad(fileName, `tensor "${info.name}": byte range [${position}, ${end}) is not inside the file's ${bytes.length} bytes`);
    }
    into.set(bytes.subarray(position, end));
  }, info, out, fileName);
}

let f16Table: Uint32Array | undefined;

/** f32 bit patterns of all 65536 half-precision values (every one is exactly representable). */
export function halfToFloatBits(): Uint32Array {
  if (f16Table) return f16Table;
  const t = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp === 0x1f) {
      t[h] = sign | 0x7f800000 | (man << 13);               // ±Inf, NaN (payload kept)
    } else if (exp !== 0) {
      t[h] = sign | ((exp - 15 + 127) << 23) | (man << 13); // normal
    } else if (man === 0) {
      t[h] = sign;                                         // ±0
    } else {
      // Subnormal man·2^-24: normalise the mantissa (shift its leading 1 out to bit 10).
      let e = -14, m = man;
      while (!(m & 0x400)) { m <<= 1; e--; }
      t[h] = sign | ((e + 127) << 23) | ((m & 0x3ff) << 13);
    }
  }
  return (f16Table = t);
}

/** Widens the little-endian F16/BF16 values held in the last 2·n bytes of `out` to f32, in place. */
function widenInPlace(out: Float32Array, dtype: string): void {
  const n = out.length;
  const size = dtypeBytes(dtype)!;
  if (!LITTLE_ENDIAN) {
    // Big-endian hosts: decode a copy of the raw bytes with DataView.
    const v = new DataView(new Uint8Array(out.buffer, out.byteOffset + (4 - size) * n, size * n).slice().buffer);
    const bits = new Uint32Array(1), asFloat = new Float32Array(bits.buffer);
    for (let i = 0; i < n; i++) {
      if (size === 4) { out[i] = v.getFloat32(4 * i, true); continue; }
      const h = v.getUint16(2 * i, true);
      bits[0] = dtype === 'BF16' ? h << 16 : halfToFloatBits()[h];
      out[i] = asFloat[0];
    }
    return;
  }
  if (size === 4) return;
  const dst = new Uint32Array(out.buffer, out.byteOffset, n);
  const src = new Uint16Array(out.buffer, out.byteOffset + 2 * n, n);
  if (dtype === 'BF16') {
    for (let i = 0; i < n; i++) dst[i] = src[i] << 16;
  } else {
    const t = halfToFloatBits();
    for (let i = 0; i < n; i++) dst[i] = t[src[i]];
  }
}
