// ckernels.h: the only header Swift sees from the C kernels.
//
// Every kernel has a scalar reference twin (ck_ref_*), always compiled, and a fast path
// chosen once at run time from the CPU's features. Matrices are row-major; a weight matrix
// W of shape [N, K] is applied as y[t][n] = sum_k x[t][k] * W[n][k] (PyTorch's Linear).
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Storage formats a weight matrix can have. Values are stable (used from Swift).
typedef enum {
    CK_DTYPE_F32 = 0,
    CK_DTYPE_BF16 = 1,
    CK_DTYPE_F16 = 2,
    CK_DTYPE_F8E4M3 = 3,  ///< OCP E4M3FN, one byte per value (bias 7, 0x7F/0xFF NaN, max 448)
    CK_DTYPE_FP4E2M1 = 4, ///< E2M1, two per byte, element 2k in the low nibble of byte k
} ck_dtype;

/// Block scales of a quantized weight matrix: W[n][k] = decode(Wq[n][k]) · s[(row0+n)/block_rows][k/block_cols],
/// with the scale grid row-major, `ld` scales per grid row. FP8 checkpoints use 128×128
/// blocks; FP4 experts use 1×32.
typedef struct {
    const void *data;   ///< the scale grid: E8M0 bytes (2^(b-127)) or float32
    int f32;            ///< 1 when `data` holds float32 scales, 0 for E8M0 bytes
    size_t ld;          ///< scales per grid row
    size_t block_rows;  ///< weight rows per scale row
    size_t block_cols;  ///< weight columns per scale
    size_t row0;        ///< the matrix's row 0 within the scaled tensor (row slices)
} ck_scales;

/// CPU feature bits found at run time.
enum {
    CK_CPU_AVX2 = 1 << 0,
    CK_CPU_FMA = 1 << 1,
    CK_CPU_AVX512F = 1 << 2,
    CK_CPU_AVX512BW = 1 << 3,
    CK_CPU_AVX512VL = 1 << 4,
    CK_CPU_AVX512BF16 = 1 << 5,
    CK_CPU_AVX512FP16 = 1 << 6,
    CK_CPU_AVX512VNNI = 1 << 7,
};

/// Implementation selector for tests and benchmarks.
typedef enum {
    CK_IMPL_AUTO = 0,    ///< best available
    CK_IMPL_SCALAR = 1,  ///< the reference twins
    CK_IMPL_AVX512 = 2,  ///< AVX-512 F/BW/VL (falls back to scalar if absent)
    CK_IMPL_AVX2 = 3,    ///< the AVX2+FMA paths even where AVX-512 exists (tests; scalar if absent)
} ck_impl;

/// Bit mask of CK_CPU_* features of this CPU.
uint32_t ck_cpu_features(void);
/// Forces an implementation for later calls on this thread; returns the one in force.
ck_impl ck_force_impl(ck_impl impl);
/// Name of the implementation in force ("avx512" or "scalar").
const char *ck_impl_name(void);

/// y[t*ldy + n] = sum_k x[t*ldx + k] * W[n][k] for t < T, n < N; W is [N, K] in `dtype`.
/// Tolerance vs ck_ref_matmul (summation order only): |Δ| <= 1e-5·√K for inputs and weights
/// in [-1, 1] (Tests/KernelTests/MatmulTests); the same bits for a token alone or in any batch.
void ck_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N,
               float *y, size_t ldy);
void ck_ref_matmul(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N,
                   float *y, size_t ldy);

/// The product the model uses: ck_matmul tiled for the caches, its output features split
/// over the thread pool when the work is large enough. Bit-identical to ck_matmul.
/// Tolerance: bit-identical to ck_matmul (so within 1e-5·√K of ck_ref_matmul).
void ck_matmul_auto(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype, size_t N,
                    float *y, size_t ldy);

/// One product y = x · Wᵀ of a wave (see ck_matmul_many); `scales` may be NULL.
typedef struct {
    const float *x;
    size_t ldx, T, K;
    const void *w;
    ck_dtype dtype;
    const ck_scales *scales;
    size_t N;
    float *y;
    size_t ldy;
} ck_product;

/// Runs `count` independent products in one job over the thread pool, their row blocks
/// interleaved as tasks, bit-identical to ck_matmul_auto / ck_matmul_scaled_auto on each.
/// Products must not write where another reads.
/// Tolerance: bit-identical to each product run alone.
void ck_matmul_many(const ck_product *products, size_t count);

/// A task of a parallel job.
typedef void (*ck_task_fn)(void *ctx, int task);
/// Starts the kernel thread pool with `threads` threads in all (the caller included; <= 0:
/// one per online CPU). Later calls return the size of the running pool.
int ck_pool_init(int threads);
/// Threads of the pool (1 before ck_pool_init).
int ck_pool_threads(void);
/// Runs fn(ctx, i) for i in [0, tasks) on the pool and the caller; returns when all are done.
void ck_pool_run(int tasks, ck_task_fn fn, void *ctx);
/// Hands the whole free pages of malloc's heaps (every arena) back to the system; returns 1
/// when some memory was released (glibc's malloc_trim; 0 elsewhere).
int ck_release_free_heap(void);
/// Test hook: runs `jobs` tiny pool jobs (2, 4 or 6 tasks) back to back and returns how many
/// did not run each task exactly once (0 expected).
long ck_pool_stress(long jobs);

/// One query's attention over `n` gathered keys (V = K) for `H` heads of width `d`: scores
/// scaled by `scale`, softmax with `sinks[h]` in each head's denominator, weighted sum into
/// `out` [H, d] (overwritten). `scratch` holds H·n floats. With n = 0 the output is 0.
/// Tolerance vs ck_ref_attend: |Δ| <= 1e-5 for unit-scale q and keys (ParallelKernelTests).
void ck_attend(const float *q, size_t H, size_t d, const float *const *keys, size_t n, const float *sinks, float scale,
               float *scratch, float *out);
void ck_ref_attend(const float *q, size_t H, size_t d, const float *const *keys, size_t n, const float *sinks,
                   float scale, float *scratch, float *out);

/// Median read bandwidth (GB/s) over `repeats` passes of all pool threads over `buffer`
/// (64-byte aligned, `floats` values).
double ck_bench_read_gbps(const float *buffer, size_t floats, int repeats);
/// fp32 FMA throughput (GFLOP/s) of `threads` pool threads, 12 independent chains each.
double ck_bench_fma_gflops(int threads, long iters);

/// As ck_matmul, for any dtype with optional block scales (NULL = all scales 1). FP4 rows
/// hold K/2 bytes (K even). The fast path decodes one weight row at a time through a lookup
/// table into a K-float scratch row and reuses it for all T tokens; no copy of W is kept.
/// Tolerance vs ck_ref_matmul_scaled, and of both vs the exact (double) sum over the decoded
/// weights: |Δ| <= 1e-6·Σ|x·w| for unit-scale inputs (QuantizedTests; 3.4e-7·Σ|x·w| measured
/// for the scalar twin); the same bits for a token alone or in any batch (OpsKernelTests).
void ck_matmul_scaled(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype,
                      const ck_scales *scales, size_t N, float *y, size_t ldy);
void ck_ref_matmul_scaled(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype,
                          const ck_scales *scales, size_t N, float *y, size_t ldy);

/// Decodes rows [r0, r0+nrows) of a [*, K] matrix (with its scales, may be NULL) into dst [nrows, K].
/// Tolerance: exact (every stored value decodes to its one float).
void ck_decode_rows(const void *w, ck_dtype dtype, size_t K, const ck_scales *scales, size_t r0, size_t nrows,
                    float *dst);

/// Bytes one row of K values of `dtype` occupies (FP4: K/2 rounded up).
size_t ck_row_bytes(ck_dtype dtype, size_t K);

/// ck_matmul_scaled with its output features split over the thread pool (row slices keep
/// their scales through `row0`).
/// Tolerance: bit-identical to ck_matmul_scaled.
void ck_matmul_scaled_auto(const float *x, size_t ldx, size_t T, size_t K, const void *w, ck_dtype dtype,
                           const ck_scales *scales, size_t N, float *y, size_t ldy);

/// Converts n values of `dtype` at src to float.
void ck_to_f32(const void *src, ck_dtype dtype, size_t n, float *dst);

/// sum_i a[i]*b[i].
/// Tolerance vs ck_ref_dot_f32: |Δ| <= 1e-5·√n for inputs in [-1, 1].
float ck_dot_f32(const float *a, const float *b, size_t n);
float ck_ref_dot_f32(const float *a, const float *b, size_t n);

/// y[i] += alpha * x[i].
/// Tolerance vs ck_ref_axpy_f32: |Δ| <= 1e-6 for |alpha·x|, |y| <= 1 (one FMA rounding).
void ck_axpy_f32(float alpha, const float *x, float *y, size_t n);
void ck_ref_axpy_f32(float alpha, const float *x, float *y, size_t n);

/// out[i] = Σ_j coef[j] · src[j][i] for i < D, the terms in order j = 0 ..< n from zero: the
/// same operations, so the same bits, as zeroing `out` and calling ck_axpy_f32(coef[j],
/// src[j], out, D) for each j (FMAs on AVX-512 machines, a multiply and an add elsewhere),
/// with each source read once per 16 values instead of out read and written n times (the
/// residual-stream mixing of mHC: 4 streams and the block output per token).
void ck_weighted_sum_f32(const float *const *src, const float *coef, size_t n, size_t D, float *out);

/// Conversions of single values (reference decoders).
float ck_bf16_to_f32(uint16_t v);
uint16_t ck_f32_to_bf16(float v);
float ck_f16_to_f32(uint16_t v);
/// OCP FP8 E4M3FN (bias 7, subnormals m/8·2^-6, 0x7F/0xFF NaN).
float ck_e4m3_to_f32(uint8_t v);
/// E8M0 scale: 2^(v-127); 0xFF is NaN.
float ck_e8m0_to_f32(uint8_t v);
/// E2M1 nibble (low 4 bits of v): sign bit 3, magnitude {0, .5, 1, 1.5, 2, 3, 4, 6}[bits 0-2].
float ck_e2m1_to_f32(uint8_t v);

// MARK: - the model's small operations (ops.c), each with its scalar twin

/// out[i] = e^x[i] (AVX-512: within 2 ulp of expf; scalar: expf).
/// Tolerance: within 2 ulp of expf (libm) everywhere, NaN and infinities as expf.
void ck_exp_f32(const float *x, size_t n, float *out);

/// log Σ e^x[i] (the log-partition of a row of logits), −inf for n = 0 or all −inf.
/// Tolerance: within 1e-6 relative of ck_ref_logsumexp (exp in double); the vector path uses
/// the ≤ 2-ulp vector exp with the lanes summed in double.
double ck_logsumexp(const float *x, size_t n);
double ck_ref_logsumexp(const float *x, size_t n);

/// out[i] = silu(g') · u' with g' = min(g, limit), u' = clamp(u, ±limit) (limit <= 0: no clamps).
/// Tolerance of the fast path: 4 ulp-ish (relative 1e-6) from its vector exp.
/// Tolerance vs ck_ref_swiglu: relative 1e-6 (OpsKernelTests).
void ck_swiglu(const float *g, const float *u, size_t n, float limit, float *out);
void ck_ref_swiglu(const float *g, const float *u, size_t n, float limit, float *out);

/// In place: x ← w ⊙ x / sqrt(mean(x²) + eps); w may be NULL. Fast path: 32-lane sums.
/// Tolerance vs ck_ref_rmsnorm: relative 1e-6.
void ck_rmsnorm(float *x, size_t n, const float *w, float eps);
/// ck_rmsnorm on `rows` rows of n values, `ld` apart, split over the kernel threads when large
/// (each row's arithmetic is ck_rmsnorm's).
void ck_rmsnorm_rows(float *x, size_t rows, size_t n, size_t ld, const float *w, float eps);
/// The rows of x (`ldx` apart) normed into out (`ldo` apart): the bits of ck_rmsnorm_rows on a
/// copy, without the copy.
void ck_rmsnorm_rows_to(const float *x, size_t ldx, size_t rows, size_t n, const float *w, float eps, float *out,
                        size_t ldo);
void ck_ref_rmsnorm(float *x, size_t n, const float *w, float eps);

/// Rotates interleaved pairs of the last `dim` of `width` values of each of `heads` vectors
/// (`stride` floats apart) to position `pos`: angle pos·inv_freq[i], cos and sin times
/// `factor`, sin negated when `inverse`. Bit-identical to its twin (angles computed once).
/// Tolerance: bit-identical to ck_ref_rope.
void ck_rope(float *x, size_t heads, size_t stride, size_t width, size_t dim, const float *inv_freq, float pos,
             float factor, int inverse);
void ck_ref_rope(float *x, size_t heads, size_t stride, size_t width, size_t dim, const float *inv_freq, float pos,
                 float factor, int inverse);

/// The indices of the k largest of n scores, largest first, equal scores by lower index
/// (k > n: n). Identical to its twin (a heap instead of a full sort).
/// Tolerance: identical indices to ck_ref_topk, ties included.
void ck_topk(const float *scores, size_t n, size_t k, int32_t *out);
void ck_ref_topk(const float *scores, size_t n, size_t k, int32_t *out);

/// Lightning-Indexer scores of one query: out[s] = Σ_h max(q_h · keys[s], 0) · scale · w[h]
/// for `H` heads of width `d` (q is [H, d]); large problems split over the thread pool.
/// Tolerance vs ck_ref_indexer_scores: |Δ| <= 1e-5·√(H·d) for unit-scale q, w and keys.
void ck_indexer_scores(const float *q, size_t H, size_t d, const float *w, float scale, const float *const *keys,
                       size_t n, float *out);
void ck_ref_indexer_scores(const float *q, size_t H, size_t d, const float *w, float scale,
                           const float *const *keys, size_t n, float *out);

/// Entries per tile of stored indexer keys: a tile is [d][CK_INDEXER_TILE] floats, dimension i
/// of the tile's entry j at i·CK_INDEXER_TILE + j.
#define CK_INDEXER_TILE 16

/// The Lightning Indexer's top-k for T queries at once (a prefill chunk, or one decode
/// token): for query t, the ids of the min(k, visible[t]) best entries s < visible[t] by
/// score(t, s) = Σ_h max(q[t,h] · key_s, 0) · scale · w[t,h] (q: [T, H, d], w: [T, H]);
/// out: [T, k]. Keys are read through `tiles` (tile i holds entries 16i..16i+15, see
/// CK_INDEXER_TILE), once per block of 8 queries; the scores are never stored whole. When
/// visible[t] <= k, out[t] is 0..<visible[t] in order; otherwise the k best, best first,
/// equal scores by lower id (as ck_topk). Threads over query blocks, and over key ranges
/// when the queries are few (decode).
/// Tolerance: the scores are within fp32 rounding of the twin's (FMA, another order of the
/// d-sums), so the selection equals the twin's except between entries whose scores differ
/// by that rounding (tested: every differing pick scores within 1e-5 relative of the k-th).
void ck_indexer_topk(const float *q, const float *w, size_t T, size_t H, size_t d, float scale,
                     const float *const *tiles, const int32_t *visible, size_t k, int32_t *out);
/// Twin: ck_ref_indexer_scores + ck_ref_topk per query.
void ck_ref_indexer_topk(const float *q, const float *w, size_t T, size_t H, size_t d, float scale,
                         const float *const *tiles, const int32_t *visible, size_t k, int32_t *out);

/// The compressor's pooling of one closed window: per channel k < c, the softmax over
/// `slots` slots (rows of `width` values) of `score` weighting `kv`; with `overlap`, slots
/// >= m read column c + k, the others column k; -inf scores are skipped. Fast path: vector
/// exp, relative tolerance 1e-6.
/// Tolerance vs ck_ref_compress_pool: |Δ| <= 2e-6·max|kv| (absolute: the outputs are weighted
/// means, so a relative bound fails near 0).
void ck_compress_pool(const float *kv, const float *score, size_t slots, size_t width, size_t c, size_t m,
                      int overlap, float *entry);
void ck_ref_compress_pool(const float *kv, const float *score, size_t slots, size_t width, size_t c, size_t m,
                          int overlap, float *entry);

/// Sinkhorn projection, in place, of `count` row-major n×n matrices: columns normalised,
/// then (iterations − 1) × (rows, columns), eps in every denominator. The fast path runs 16
/// matrices per vector (n·n <= 64), bit-identical to its twin.
/// Tolerance: bit-identical to ck_ref_sinkhorn.
void ck_sinkhorn(float *C, size_t count, size_t n, int iterations, float eps);
void ck_ref_sinkhorn(float *C, size_t count, size_t n, int iterations, float eps);

// MARK: - attention of a block of queries over shared keys (attend_block.c)

/// Attention of `T` queries (q: [T, H, d]) over one shared list of `n` keys (V = K) where
/// query t sees the keys in [ranges[4t], ranges[4t+1]) and then [ranges[4t+2], ranges[4t+3])
/// (either range may be empty; ranges within [0, n), the second not overlapping the first),
/// for `H` heads of width `d`: scores scaled by `scale`, softmax with `sinks[h]` in each
/// head's denominator, weighted sum into `out` [T, H, d] (overwritten); a query that sees no
/// key gets 0. The same as ck_attend per query over its visible keys gathered in that order.
/// Intended use: keys = compressed entries 0..<E, then window positions; query t's first
/// range its visible entries, its second its window. Flash-attention style: blocks of queries
/// (all heads) against blocks of keys from the union of their ranges, online softmax, so a key
/// is read once per query block, not per query; threads over query blocks, and over key
/// ranges when the queries are few (decode).
/// Tolerance vs ck_ref_attend_ranges: |Δ| <= 1e-5 for unit-scale q and keys, large-score
/// spikes included (AttendRangesTests).
void ck_attend_ranges(const float *q, size_t T, size_t H, size_t d, const float *const *keys, size_t n,
                      const int32_t *ranges, const float *sinks, float scale, float *out);
/// Twin: per query, the visible keys gathered and ck_ref_attend.
void ck_ref_attend_ranges(const float *q, size_t T, size_t H, size_t d, const float *const *keys, size_t n,
                          const int32_t *ranges, const float *sinks, float scale, float *out);

// MARK: - indexer keys in low precision (indexer_lowp.c): the bf16 and fp8 KV-cache modes

/// bf16 tiles: [d][CK_INDEXER_TILE] bf16 values (uint16, the top half of the fp32 bits),
/// dimension i of entry j at i·16 + j: CK_INDEXER_TILE_BF16_BYTES(d) bytes.
#define CK_INDEXER_TILE_BF16_BYTES(d) ((d) * CK_INDEXER_TILE * 2)
/// Writes entry `slot` (0..<16) of a bf16 tile: key[0..<d] rounded to nearest, ties to even.
void ck_indexer_store_bf16(const float *key, size_t d, void *tile, size_t slot);
/// ck_indexer_topk over bf16 tiles: the same scores and selection with the keys widened to
/// fp32 in registers (fp32 FMA arithmetic).
/// Tolerance: as ck_indexer_topk against ck_ref_indexer_topk_bf16 (the same keys): picks
/// equal except between entries whose scores differ by fp32 rounding (1e-5 relative of the
/// k-th). Against fp32 keys the bf16 rounding (2^-9 relative per value) moves near-ties:
/// measured mean top-64 overlap with the fp32 picks 0.99 to 1.0 (8 heads × 64, 2,000 to
/// 30,000 keys; tested >= 0.97).
void ck_indexer_topk_bf16(const float *q, const float *w, size_t T, size_t H, size_t d, float scale,
                          const void *const *tiles, const int32_t *visible, size_t k, int32_t *out);
/// Twin: the tiles widened to fp32, then ck_ref_indexer_topk.
void ck_ref_indexer_topk_bf16(const float *q, const float *w, size_t T, size_t H, size_t d, float scale,
                              const void *const *tiles, const int32_t *visible, size_t k, int32_t *out);

/// 8-bit tiles (d a multiple of 4): each entry quantized symmetrically with its own scale,
/// sk = max|k|/63, code = round(k/sk) (nearest, ties to even) in [-63, 63], stored as the
/// byte code + 64 (sk = 0: every byte 64; 7-bit codes so that two vpmaddubsw results add in
/// int16 without wrapping). Codes as [d/4][16][4] bytes (dimensions 4g..4g+3
/// of entry j at g·64 + j·4), then the 16 float scales: CK_INDEXER_TILE_I8_BYTES(d) bytes.
#define CK_INDEXER_TILE_I8_BYTES(d) ((d) * CK_INDEXER_TILE + CK_INDEXER_TILE * sizeof(float))
/// Writes entry `slot` (0..<16) of an 8-bit tile from key[0..<d] (d % 4 == 0).
void ck_indexer_store_i8(const float *key, size_t d, void *tile, size_t slot);
/// ck_indexer_topk over 8-bit tiles (d % 4 == 0). Each (query t, head h) is quantized in the
/// call: sq = max|q|/63, q8 = round(q/sq) in [-63, 63]; dot_h = Σ q8·code, exact in int32;
/// score(t, s) = sk_s · Σ_h c_h · max(dot_h, 0) with c_h = w[t,h]·scale·sq_h, accumulated by
/// fmaf heads in order, then × sk_s. Selection, ordering and threading as ck_indexer_topk;
/// integer dots by AVX-512 VNNI (vpdpbusd) where the CPU has it, else AVX2 (vpmaddubsw +
/// vpmaddwd).
/// Tolerance: bit-identical picks to ck_ref_indexer_topk_i8 (the same integer dots and the
/// same float operations in the same order). Against fp32 keys and queries the quantization
/// moves near-ties: measured mean top-64 overlap with the fp32 picks 0.97 to 0.99 (8 heads ×
/// 64, 2,000 to 30,000 keys; 0.96 with a 10× outlier channel; tested >= 0.93).
void ck_indexer_topk_i8(const float *q, const float *w, size_t T, size_t H, size_t d, float scale,
                        const void *const *tiles, const int32_t *visible, size_t k, int32_t *out);
/// Twin: the same quantized queries, scalar int32 dots and float epilogue, then ck_ref_topk.
void ck_ref_indexer_topk_i8(const float *q, const float *w, size_t T, size_t H, size_t d, float scale,
                            const void *const *tiles, const int32_t *visible, size_t k, int32_t *out);

/// Stored formats of compressed KV entries (--kv-cache-dtype; kernels/kvcache.c). Values are
/// stable (used from Swift).
typedef enum {
    CK_KV_F32 = 0,   ///< d floats: exact
    CK_KV_BF16 = 1,  ///< d bf16 values, round to nearest even
    CK_KV_FP8 = 2,   ///< [f32 scale][d − rope E4M3 (value / scale)][rope BF16], the V4 paper's cache
} ck_kv_format;

/// Bytes one entry of width `d` (its last `rope` values rotated) takes in format `f` (a multiple of 4).
size_t ck_kv_entry_bytes(ck_kv_format f, size_t d, size_t rope);
/// Writes entry `v` in format `f` to `dst` (ck_kv_entry_bytes bytes). FP8: scale = amax/448
/// over the non-RoPE values, E4M3 round to nearest even, saturating at ±448.
void ck_kv_store(ck_kv_format f, const float *v, size_t d, size_t rope, void *dst);
/// Reads one stored entry back as `d` floats. f32: the same bits; bf16: |Δ| ≤ 2^-8·|v|;
/// fp8: |Δ| ≤ 2^-4·|v| + 2^-10·scale on the non-RoPE values (E4M3's half step; subnormals),
/// bf16's bound on the RoPE values (KVCacheFormatTests).
void ck_kv_load(ck_kv_format f, const void *src, size_t d, size_t rope, float *out);
/// `n` entries (`src[e]`) into out [n, d].
void ck_kv_load_many(ck_kv_format f, const void *const *src, size_t n, size_t d, size_t rope, float *out);
/// ck_attend_ranges over keys of which the first `coded` are stored entries in format `f`
/// (ck_kv_store's bytes, their last `rope` values rotated) and the rest fp32 vectors: each
/// key block's stored entries are decoded (ck_kv_load) into a per-thread buffer right before
/// use, so a long list of compressed entries is read in its stored size, never widened into
/// a buffer of its own. Bit-identical to ck_attend_ranges over the keys decoded first, and
/// so within its tolerance of ck_ref_attend_ranges over them (AttendRangesTests).
void ck_attend_ranges_kv(const float *q, size_t T, size_t H, size_t d, const void *const *keys, size_t n,
                         ck_kv_format f, size_t coded, size_t rope, const int32_t *ranges, const float *sinks,
                         float scale, float *out);
/// OCP E4M3FN of x, round to nearest even, saturating at ±448 (NaN stays NaN).
uint8_t ck_f32_to_e4m3(float x);

#ifdef __cplusplus
}
#endif
#endif
