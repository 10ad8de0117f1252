// The kernel module: every export takes numbers only (byte offsets into the
// host-owned memory, sizes, scalars). Kernels know nothing about models.
export { build_is_relaxed } from "./simd";
export { matmul_nt, matmul_nn, matmul_pack_bytes, matvec, vecmat, matvec_batch, vecmat_batch,
  matmul_gemm_min_rows, matmul_split_cols, vec_l1_floats } from "./matmul";
export { probe_peak, probe_peak_chains, probe_read, probe_read_pairs, probe_read_block, probe_matvec } from "./probe";
export { rmsnorm } from "./norm";
export { rope_table, rope_apply } from "./rope";
export { attn_init, attn_block, attn_merge, attn_finish, attn_scratch_bytes, attn_query_tile } from "./attention";
export { swiglu, add, axpy, embed, first_nonfinite } from "./elementwise";
export { matvec_bf16, matvec_f16, matvec_q8, matvec_q4, matmul_nt_bf16, matmul_nt_f16, matmul_nt_q8, matmul_nt_q4, quantize_q8_act, quant_prep_bytes, quantize_q8_rows, quantize_q4_rows, dequantize_q8, dequantize_q4, widen_f16, widen_bf16,
  embed_bf16, embed_f16, embed_q8, embed_q4 } from "./quant";
export { matmul_nt_q4k, matmul_nt_q5k, matmul_nt_q6k, quantize_q8k_act, dequantize_q4k, dequantize_q5k, dequantize_q6k, embed_q4k, embed_q5k, embed_q6k } from "./kquants";
export { gemv_rows_f32, gemv_rows_bf16, gemv_rows_max } from "./gemv-rows";
export { attn_block_latent, latent_store, latent_widen, latent_query, latent_row_bytes, latent_query_bytes } from "./latent";
export { qgemm_q8, qgemm_q4, qgemm_kq, qgemm_pack_bytes, qgemm_split_cols } from "./qgemm";
