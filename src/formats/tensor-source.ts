// What a checkpoint format offers the model: tensor names, shapes, and values read on demand.

/**
 * How a tensor is stored in its file. The model keeps 16-bit and block-quantised tensors as they
 * are when asked to (weights 'auto'); every type can also be read widened to f32.
 */
export type StoredType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0';

/** llama.cpp's K-quants the model keeps in their super-blocks of 256 (assembly/kquants.ts reads them). */
export type SuperBlockType = 'Q4_K' | 'Q5_K' | 'Q6_K';

/**
 * Types the model keeps by an exact repack into a format it has (repack.ts): Q3_K as Q6_K
 * super-blocks, Q5_0, IQ4_NL and IQ4_XS as int8 blocks of 32 (q8).
 */
export type RepackedType = 'Q3_K' | 'Q5_0' | 'IQ4_NL' | 'IQ4_XS';

/** How a tensor is stored, as far as the formats the model keeps go. */
export type KeptType = StoredType | SuperBlockType | RepackedType;

/** Where a decoder reads its tensors from: an in-memory map, a safetensors or a GGUF file. */
export interface TensorSource {
  names(): Iterable<string>;
  shape(name: string): readonly number[] | undefined;
  /** Copy tensor `name` as f32 into `out` (whose length is its element count). */
  read(name: string, out: Float32Array): void;
  /** How tensor `name` is stored; absent (or undefined for a name): F32. */
  stored?(name: string): KeptType | undefined;
  /** An F16 or BF16 tensor's raw 16-bit values, row-major, into `out` (its element count long). */
  read16?(name: string, out: Uint16Array): void;
  /**
   * A Q8_0 or Q4_0 matrix [rows, cols] (cols a multiple of 32) as the q8/q4 weight layout of
   * assembly/quant.ts: each row's codes into `q` (cols bytes a row for Q8_0, cols/2 for Q4_0, in
   * llama.cpp's order within a block) and each block's scale widened to f32 into `d` (rows·cols/32).
   * A Q5_0, IQ4_NL or IQ4_XS matrix comes as q8, repacked exactly: int8 codes (cols bytes a row).
   */
  readBlocks?(name: string, q: Uint8Array, d: Float32Array): void;
  /**
   * A Q4_K, Q5_K or Q6_K matrix [rows, cols] (cols a multiple of 256) as the file stores it: each
   * row's super-blocks (144, 176 or 210 bytes per 256 values), rows in order, into `out`. A Q3_K
   * matrix comes as Q6_K super-blocks (210 bytes per 256), repacked exactly.
   */
  readSuperBlocks?(name: string, out: Uint8Array): void;
  /**
   * Rows [row0, row0 + rows) of 2-D tensor `name` as a source of one tensor of their own (named
   * `name`), read without the rest: how Phi-3's fused tensors are split (fused.ts).
   */
  rowsOf?(name: string, row0: number, rows: number): TensorSource;
}
