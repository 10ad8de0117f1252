// ggml's tensor types as GGUF files number them: which ones exist (so that every tensor's byte size
// can be checked, even one we do not read), and which ones are read. Numbers from ggml.h's
// enum ggml_type; ids that were retired (4, 5, 31–33, 36–38) are unknown.
import type { StoredType } from './tensor-source.js';

export interface GgmlType {
  name: string;
  /** Elements per block (1 for plain floats and ints). */
  block: number;
  /** Bytes per block. */
  bytes: number;
}

const TYPES: Record<number, GgmlType> = {
  0: { name: 'F32', block: 1, bytes: 4 },
  1: { name: 'F16', block: 1, bytes: 2 },
  2: { name: 'Q4_0', block: 32, bytes: 18 },
  3: { name: 'Q4_1', block: 32, bytes: 20 },
  6: { name: 'Q5_0', block: 32, bytes: 22 },
  7: { name: 'Q5_1', block: 32, bytes: 24 },
  8: { name: 'Q8_0', block: 32, bytes: 34 },
  9: { name: 'Q8_1', block: 32, bytes: 36 },
  10: { name: 'Q2_K', block: 256, bytes: 84 },
  11: { name: 'Q3_K', block: 256, bytes: 110 },
  12: { name: 'Q4_K', block: 256, bytes: 144 },
  13: { name: 'Q5_K', block: 256, bytes: 176 },
  14: { name: 'Q6_K', block: 256, bytes: 210 },
  15: { name: 'Q8_K', block: 256, bytes: 292 },
  16: { name: 'IQ2_XXS', block: 256, bytes: 66 },
  17: { name: 'IQ2_XS', block: 256, bytes: 74 },
  18: { name: 'IQ3_XXS', block: 256, bytes: 98 },
  19: { name: 'IQ1_S', block: 256, bytes: 50 },
  20: { name: 'IQ4_NL', block: 32, bytes: 18 },
  21: { name: 'IQ3_S', block: 256, bytes: 110 },
  22: { name: 'IQ2_S', block: 256, bytes: 82 },
  23: { name: 'IQ4_XS', block: 256, bytes: 136 },
  24: { name: 'I8', block: 1, bytes: 1 },
  25: { name: 'I16', block: 1, bytes: 2 },
  26: { name: 'I32', block: 1, bytes: 4 },
  27: { name: 'I64', block: 1, bytes: 8 },
  28: { name: 'F64', block: 1, bytes: 8 },
  29: { name: 'IQ1_M', block: 256, bytes: 56 },
  30: { name: 'BF16', block: 1, bytes: 2 },
  34: { name: 'TQ1_0', block: 256, bytes: 54 },
  35: { name: 'TQ2_0', block: 256, bytes: 66 },
  39: { name: 'MXFP4', block: 32, bytes: 17 },
};

/** The type with GGUF id `id`, or undefined for an id ggml does not define. */
export function ggmlType(id: number): GgmlType | undefined {
  return Object.prototype.hasOwnProperty.call(TYPES, id) ? TYPES[id] : undefined;
}

/** The GGUF id of a type we write. */
export const TYPE_ID: Record<StoredType, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, BF16: 30 };

/**
 * The types whose tensors are read. Kept in a form the kernels read (weights 'auto'), every one
 * exactly: Q8_0, Q4_0 as q8 / q4; Q4_K, Q5_K, Q6_K in their super-blocks; Q3_K repacked to Q6_K's
 * (3.44 → 6.56 bits a weight); Q5_0, IQ4_NL, IQ4_XS repacked to q8 (5.5, 4.5, 4.25 → 9). Q5_1
 * (affine) only widened to f32. Any of them can be widened exactly (decodeRow).
 */
export const READ_TYPES: readonly string[] = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q5_0', 'Q5_1', 'IQ4_NL', 'IQ4_XS', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'];
