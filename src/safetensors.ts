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
// names the file and the tensor.

import { MlaError } from './errors.js';

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

/** Number of elements of a shape (1 for a scalar, []). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Parses and validates the header of a safetensors file held in `bytes`. */
export function parseSafetensorsHeader(bytes: Uint8Array, fileName = 'model.safetensors'): SafetensorsHeader {
  if (bytes.length < 8) {
    throw bad(fileName, `file is ${bytes.length} bytes, shorter than the 8-byte header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = view.getUint32(0, true), hi = view.getUint32(4, true);
  const headerLen = hi * 2 ** 32 + lo;
  if (hi !== 0 || headerLen > MAX_HEADER_BYTES) {
    throw bad(fileName, `header length ${headerLen} is absurd (over ${MAX_HEADER_BYTES} bytes): not a safetensors file or corrupt`);
  }
  if (8 + headerLen > bytes.length) {
    throw bad(fileName, `header length ${headerLen} runs past the end of the file (${bytes.length} bytes): truncated?`);
  }
  const dataStart = 8 + headerLen;

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
    tensors.set(name, parseEntry(name, entry, dataStart, bytes.length, fileName));
  }
  checkNoOverlap(tensors, fileName);
  return { tensors, metadata, dataStart, fileBytes: bytes.length };
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

/**
 * Copies one tensor into `out` as float32. `out.length` must be the tensor's element count.
 * Reads F32; any other dtype throws MlaError('UNSUPPORTED_DTYPE').
 */
export function readTensorF32(bytes: Uint8Array, info: TensorInfo, out: Float32Array, fileName = 'model.safetensors'): void {
  const n = elementCount(info.shape);
  if (info.dtype !== 'F32') {
    throw new MlaError('UNSUPPORTED_DTYPE', `${fileName}: tensor "${info.name}" has dtype ${info.dtype}; only F32 is read`);
  }
  if (out.length !== n) {
    throw new MlaError('BAD_INPUT', `readTensorF32: tensor "${info.name}" has ${n} elements, output buffer has ${out.length}`);
  }
  if (!(isNonNegInt(info.begin) && isNonNegInt(info.end) && info.end <= bytes.length && info.end - info.begin === 4 * n)) {
    throw bad(fileName, `tensor "${info.name}": byte range [${info.begin}, ${info.end}) does not fit ${n} F32 values inside ${bytes.length} bytes`);
  }
  const at = bytes.byteOffset + info.begin;
  if (LITTLE_ENDIAN && at % 4 === 0) {
    out.set(new Float32Array(bytes.buffer, at, n));
    return;
  }
  const view = new DataView(bytes.buffer, at, 4 * n);
  for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
}
