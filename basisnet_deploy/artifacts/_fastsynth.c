/* Fused synthesis kernel: mix the K bases of each patched int8 conv, re-quantize it per output
 * channel and write kernel bytes, scales, bias (int32, or int64 beside int16 activations) and
 * bias scales straight into the model buffer. Called through ctypes by
 * basisnet_deploy/fast_synthesis.py, which also holds the pure-NumPy fallback that must give
 * the same bytes.
 *
 * The arithmetic is the format's definition (fast_synthesis.py's docstring states it), so it
 * must stay bit-identical to NumPy and to the Java core:
 *   - every float op is one IEEE float32 op, in the order written; this file is compiled with
 *     -ffp-contract=off and without -ffast-math, so no FMA and no reassociation;
 *   - round half to even with the 1.5 * 2^23 trick, exact for |x| <= 2^22 (here |x| <= ~127);
 *   - the per-channel max is taken on the bit patterns of |w| (for non-negative floats the
 *     integer order is the float order), which vectorizes without -ffast-math.
 * One build runs on any CPU: the layer loops exist twice, generic (the baseline ISA) and, on
 * x86-64 with GCC or Clang, AVX2 with explicit intrinsics, picked per call by
 * __builtin_cpu_supports. bn_use_simd(0) forces the generic ones, so tests check both.
 * Little-endian hosts only (the Python side checks).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define BN_INLINE static inline __attribute__((always_inline))
#define BN_EXPORT __attribute__((visibility("default")))
#else
#define BN_INLINE static __forceinline
#define BN_EXPORT __declspec(dllexport)
#define restrict __restrict
#endif

enum { D_BASES, D_BSCALES, D_BIAS, D_OUTER, D_C, D_INNER, D_SLOT, D_WOFF, D_SOFF, D_BOFF, D_BSOFF,
       D_INSCALE, D_BIAS64, D_N }; /* D_BIAS64: 1 where the bias is int64 */

/* One block of the mix: acc[j] for n contiguous elements is acc = b_0 * m_0, then
 * acc = acc + b_k * m_k for k = 1..K-1, each product and sum rounded to float32. */
typedef struct {
    const void *b;    /* element 0 of basis 0 (int8 for compact bases, else float32) */
    int64_t stride;   /* elements from one basis to the next */
    const float *m;   /* multiplier of basis 0: float bases a_k, compact a_k * scale_k[c] */
    int64_t m_stride; /* from one basis's multipliers to the next's */
    int m_vec;        /* 1: one multiplier per element, m[k * m_stride + j] (a row across
                         channels); 0: one per basis, m[k * m_stride] */
    int64_t K;
} bn_mix;

BN_INLINE void mix_f32(const bn_mix *x, int64_t n, float *restrict acc) {
    const float *restrict b = (const float *)x->b;
    const float m0 = x->m[0];
    for (int64_t j = 0; j < n; j++) acc[j] = b[j] * m0;
    for (int64_t k = 1; k < x->K; k++) {
        const float *restrict bk = b + k * x->stride;
        const float mk = x->m[k * x->m_stride];
        for (int64_t j = 0; j < n; j++) acc[j] = acc[j] + bk[j] * mk;
    }
}

BN_INLINE void mix_i8_scalar(const bn_mix *x, int64_t n, float *restrict acc) {
    const int8_t *restrict b = (const int8_t *)x->b;
    const float m0 = x->m[0];
    for (int64_t j = 0; j < n; j++) acc[j] = (float)b[j] * m0;
    for (int64_t k = 1; k < x->K; k++) {
        const int8_t *restrict bk = b + k * x->stride;
        const float mk = x->m[k * x->m_stride];
        for (int64_t j = 0; j < n; j++) acc[j] = acc[j] + (float)bk[j] * mk;
    }
}

BN_INLINE void mix_i8_vector(const bn_mix *x, int64_t n, float *restrict acc) {
    const int8_t *restrict b = (const int8_t *)x->b;
    const float *restrict m = x->m;
    for (int64_t j = 0; j < n; j++) acc[j] = (float)b[j] * m[j];
    for (int64_t k = 1; k < x->K; k++) {
        const int8_t *restrict bk = b + k * x->stride;
        const float *restrict mk = m + k * x->m_stride;
        for (int64_t j = 0; j < n; j++) acc[j] = acc[j] + (float)bk[j] * mk[j];
    }
}

BN_INLINE uint32_t max_abs_bits(const float *restrict w, int64_t n, uint32_t m) {
    for (int64_t j = 0; j < n; j++) {
        uint32_t u;
        memcpy(&u, &w[j], 4);
        u &= 0x7fffffffu;
        m = u > m ? u : m;
    }
    return m;
}

/* The channel's weight scale: max |w| / 127, 1e-9 where that is not > 0, then raised to the
 * bias floor |bias[c]| / (input_scale * 2^30) where the layer has a bias (so the bias of a
 * (near) zero channel stays near 2^30: an int32 one fits, and an int64 one stays inside what
 * TFLite's 16x8 kernels compute; synthesis.bias_scale_floor has the details). */
BN_INLINE float channel_scale(uint32_t max_bits, const int64_t *d, int64_t c) {
    float m, s;
    memcpy(&m, &max_bits, 4);
    s = m / 127.0f;
    s = s > 0.0f ? s : (float)1e-9; /* (float)1e-9: NumPy's np.float32(1e-9) */
    if (d[D_BOFF] >= 0) {
        const float *bias = (const float *)(intptr_t)d[D_BIAS];
        float in_scale;
        uint32_t in_bits = (uint32_t)d[D_INSCALE];
        memcpy(&in_scale, &in_bits, 4);
        const float floor_ = fabsf(bias[c]) / (in_scale * 1073741824.0f);
        s = floor_ > s ? floor_ : s;
    }
    return s;
}

/* int8 of w / scale, round half to even then clip to [-127, 127]. Adding 1.5 * 2^23 rounds
 * to an integer (exact for |x| <= 2^22; here |x| <= ~127), which then sits in the low mantissa
 * bits; clipping on integers keeps the loop branch-free so it vectorizes. */
BN_INLINE int8_t to_int8(float x) {
    const float y = x + 12582912.0f;
    uint32_t u;
    memcpy(&u, &y, 4);
    int32_t r = (int32_t)u - 0x4B400000;
    r = r < -127 ? -127 : r;
    r = r > 127 ? 127 : r;
    return (int8_t)r;
}

BN_INLINE void quantize(const float *restrict w, int64_t n, float scale, int8_t *restrict out) {
    for (int64_t j = 0; j < n; j++) out[j] = to_int8(w[j] / scale);
}

BN_INLINE void quantize_vec(const float *restrict w, int64_t n, const float *restrict scale,
                            int8_t *restrict out) {
    for (int64_t j = 0; j < n; j++) out[j] = to_int8(w[j] / scale[j]);
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(BN_NO_SIMD)
#include <immintrin.h>
#define BN_HAVE_AVX2 1
#define BN_AVX2 __attribute__((target("avx2")))

/* The mixes in AVX2 intrinsics: the same values, op for op (widen int8, multiply, add; each
 * rounded; no FMA: target "avx2" without "fma", and -ffp-contract=off). 32 accumulators stay
 * in four registers across all K bases. GCC's own vectorization of the generic loops loads
 * and stores acc once per basis and widens int8 in three shuffles; perf showed those loops
 * compute-bound on the project's 2-core AMD EPYC. */
#define BN_LOAD_I8(p) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p))))
#define BN_LOAD_F32(p) _mm256_loadu_ps(p)
/* The multipliers of basis k for the 8 elements at offset o (see mix_f32). */
#define BN_M(k, o) (m_vec ? _mm256_loadu_ps(m + (k) * m_stride + j + (o)) : _mm256_set1_ps(m[(k) * m_stride]))
#define BN_T(p, k, o) _mm256_mul_ps(LOAD(p), BN_M(k, o))

#define BN_MIX_AVX2(NAME, T)                                                                       \
    BN_AVX2 static int64_t NAME(const bn_mix *x, int64_t n, float *restrict acc) {                 \
        const T *restrict b = (const T *)x->b;                                                     \
        const float *restrict m = x->m;                                                            \
        const int64_t stride = x->stride, m_stride = x->m_stride, K = x->K;                        \
        const int m_vec = x->m_vec;                                                                \
        int64_t j = 0;                                                                             \
        for (; j + 32 <= n; j += 32) {                                                             \
            __m256 r0 = BN_T(b + j, 0, 0), r1 = BN_T(b + j + 8, 0, 8);                             \
            __m256 r2 = BN_T(b + j + 16, 0, 16), r3 = BN_T(b + j + 24, 0, 24);                     \
            for (int64_t k = 1; k < K; k++) {                                                      \
                const T *bk = b + k * stride + j;                                                  \
                r0 = _mm256_add_ps(r0, BN_T(bk, k, 0));                                            \
                r1 = _mm256_add_ps(r1, BN_T(bk + 8, k, 8));                                        \
                r2 = _mm256_add_ps(r2, BN_T(bk + 16, k, 16));                                      \
                r3 = _mm256_add_ps(r3, BN_T(bk + 24, k, 24));                                      \
            }                                                                                      \
            _mm256_storeu_ps(acc + j, r0);                                                         \
            _mm256_storeu_ps(acc + j + 8, r1);                                                     \
            _mm256_storeu_ps(acc + j + 16, r2);                                                    \
            _mm256_storeu_ps(acc + j + 24, r3);                                                    \
        }                                                                                          \
        for (; j + 8 <= n; j += 8) {                                                               \
            __m256 r0 = BN_T(b + j, 0, 0);                                                         \
            for (int64_t k = 1; k < K; k++) r0 = _mm256_add_ps(r0, BN_T(b + k * stride + j, k, 0)); \
            _mm256_storeu_ps(acc + j, r0);                                                         \
        }                                                                                          \
        return j; /* elements done; the caller's generic loop does the rest */                    \
    }

#define LOAD BN_LOAD_I8
BN_MIX_AVX2(mix_i8_avx2, int8_t)
#undef LOAD
#define LOAD BN_LOAD_F32
BN_MIX_AVX2(mix_f32_avx2, float)
#undef LOAD
#endif

/* n contiguous elements of block x (int8 bases when `compact`, else float32). */
BN_INLINE void mix_block(int simd, int compact, const bn_mix *x, int64_t n, float *acc) {
    int64_t j = 0;
#ifdef BN_HAVE_AVX2
    if (simd) j = compact ? mix_i8_avx2(x, n, acc) : mix_f32_avx2(x, n, acc);
#else
    (void)simd;
#endif
    if (j == n) return;
    bn_mix rest = *x; /* the tail: the same block from element j on */
    rest.b = compact ? (const void *)((const int8_t *)x->b + j) : (const void *)((const float *)x->b + j);
    if (x->m_vec) rest.m = x->m + j;
    if (!compact)
        mix_f32(&rest, n - j, acc + j);
    else if (x->m_vec)
        mix_i8_vector(&rest, n - j, acc + j);
    else
        mix_i8_scalar(&rest, n - j, acc + j);
}

#ifdef BN_HAVE_AVX2
BN_AVX2 static void mix_block_avx2(const bn_mix *x, int64_t n, float *acc) { mix_block(1, 0, x, n, acc); }
#endif

/* What one layer's synthesis works with. */
typedef struct {
    const float *a; /* the coefficient row [K] */
    int64_t K;
    uint8_t *buf;   /* the model buffer */
    float *scratch; /* the largest per-layer need */
    float *scales;  /* the largest C */
    float *m;       /* compact multipliers m[k * C + c] = a_k * scale_k[c]; K times the largest C */
} bn_ctx;

BN_INLINE void compact_multipliers(const bn_ctx *cx, const int64_t *d) {
    const int64_t C = d[D_C];
    const float *s = (const float *)(intptr_t)d[D_BSCALES];
    for (int64_t k = 0; k < cx->K; k++)
        for (int64_t c = 0; c < C; c++) cx->m[k * C + c] = cx->a[k] * s[k * C + c];
}

/* The block of the mix starting at element `at` of every basis; m_at indexes the multipliers
 * (compact: channel c, or 0 for a row; float bases use the coefficients). */
BN_INLINE bn_mix block_at(const bn_ctx *cx, const int64_t *d, int64_t at, int64_t m_at, int m_vec) {
    const int compact = d[D_BSCALES] != 0;
    bn_mix x;
    x.b = compact ? (const void *)((const int8_t *)(intptr_t)d[D_BASES] + at)
                  : (const void *)((const float *)(intptr_t)d[D_BASES] + at);
    x.stride = d[D_OUTER] * d[D_C] * d[D_INNER];
    x.m = compact ? cx->m + m_at : cx->a;
    x.m_stride = compact ? d[D_C] : 1;
    x.m_vec = m_vec;
    x.K = cx->K;
    return x;
}

/* Output channel = a contiguous block (TFLite OHWI conv, ONNX OIHW): one channel at a time in
 * `scratch` (L1-sized), so no layer-sized float kernel is ever written. */
BN_INLINE void layer_by_channel(int simd, const bn_ctx *cx, const int64_t *d) {
    const int64_t C = d[D_C], inner = d[D_INNER];
    int8_t *out = (int8_t *)(cx->buf + d[D_WOFF]);
    for (int64_t c = 0; c < C; c++) {
        const bn_mix x = block_at(cx, d, c * inner, c, 0);
        mix_block(simd, d[D_BSCALES] != 0, &x, inner, cx->scratch);
        cx->scales[c] = channel_scale(max_abs_bits(cx->scratch, inner, 0), d, c);
        quantize(cx->scratch, inner, cx->scales[c], out + c * inner);
    }
}

/* Channel axis inside the layout (TFLite depthwise [1, H, W, C]): these kernels are small, so
 * the whole layer is mixed into `scratch` first, then each channel's max is known. */
BN_INLINE void layer_whole(int simd, const bn_ctx *cx, const int64_t *d) {
    const int64_t outer = d[D_OUTER], C = d[D_C], inner = d[D_INNER], row = C * inner;
    const int compact = d[D_BSCALES] != 0;
    float *w = cx->scratch;
    for (int64_t o = 0; o < outer; o++) {
        if (!compact || inner == 1) { /* a row is one block: float bases, or a multiplier per element */
            const bn_mix x = block_at(cx, d, o * row, 0, compact);
            mix_block(simd, compact, &x, row, w + o * row);
        } else {
            for (int64_t c = 0; c < C; c++) {
                const bn_mix x = block_at(cx, d, o * row + c * inner, c, 0);
                mix_block(simd, 1, &x, inner, w + o * row + c * inner);
            }
        }
    }
    for (int64_t c = 0; c < C; c++) {
        uint32_t mx = 0;
        for (int64_t o = 0; o < outer; o++) mx = max_abs_bits(w + o * row + c * inner, inner, mx);
        cx->scales[c] = channel_scale(mx, d, c);
    }
    int8_t *out = (int8_t *)(cx->buf + d[D_WOFF]);
    for (int64_t o = 0; o < outer; o++) {
        if (inner == 1)
            quantize_vec(w + o * row, C, cx->scales, out + o * row);
        else
            for (int64_t c = 0; c < C; c++)
                quantize(w + o * row + c * inner, inner, cx->scales[c], out + o * row + c * inner);
    }
}

BN_INLINE void layer(int simd, const bn_ctx *cx, const int64_t *d) {
    if (d[D_BSCALES]) compact_multipliers(cx, d);
    if (d[D_OUTER] == 1)
        layer_by_channel(simd, cx, d);
    else
        layer_whole(simd, cx, d);
}

/* The layer loops compiled twice: max/quantize loops auto-vectorize for the target, the
 * mixes are the intrinsics above (AVX2) or the generic loops. */
static void layer_generic(const bn_ctx *cx, const int64_t *d) { layer(0, cx, d); }
#ifdef BN_HAVE_AVX2
BN_AVX2 static void layer_avx2(const bn_ctx *cx, const int64_t *d) { layer(1, cx, d); }
#endif

/* Scales, and the bias re-quantized with them: bias_scale = input_scale * scale[c], bias_q =
 * round_half_even(bias[c] / bias_scale) in float32, about 2^30 at most by channel_scale's floor
 * (float32 rounding can add a few ulps), saturated to the bias's type all the same. */
static void write_channel_data(const int64_t *d, uint8_t *buf, const float *scales) {
    const int64_t C = d[D_C];
    const float *bias = (const float *)(intptr_t)d[D_BIAS];
    float in_scale;
    uint32_t in_bits = (uint32_t)d[D_INSCALE];
    memcpy(&in_scale, &in_bits, 4);
    memcpy(buf + d[D_SOFF], scales, 4 * (size_t)C);
    if (d[D_BOFF] < 0) return; /* a conv without bias (ONNX depthwise) */
    for (int64_t c = 0; c < C; c++) {
        const float bias_scale = in_scale * scales[c];
        const float q = rintf(bias[c] / bias_scale);
        if (d[D_BIAS64]) {
            const int64_t v = q >= 9223372036854775808.0f ? INT64_MAX
                              : q < -9223372036854775808.0f ? INT64_MIN : (int64_t)q;
            memcpy(buf + d[D_BOFF] + 8 * c, &v, 8);
        } else {
            const int32_t v = q >= 2147483648.0f ? INT32_MAX : q < -2147483648.0f ? INT32_MIN : (int32_t)q;
            memcpy(buf + d[D_BOFF] + 4 * c, &v, 4);
        }
        memcpy(buf + d[D_BSOFF] + 4 * c, &bias_scale, 4);
    }
}

static int use_simd = 1;

/* 1: the AVX2 loops are used where the CPU has them; 0: the generic loops (for tests). Returns
 * whether the AVX2 loops will run. */
BN_EXPORT int bn_use_simd(int on) {
    use_simd = on;
#ifdef BN_HAVE_AVX2
    return on && __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

/* All layers with todo[i] != 0. desc: int64[n_layers][D_N] (see the enum and fast_synthesis.py);
 * coeff: float32 [L, K]; work: four addresses: the model buffer, then float32 workspaces for
 * scratch (the largest per-layer need), scales (the largest C) and compact multipliers (K
 * times the largest C). */
BN_EXPORT int bn_synthesize(const int64_t *desc, int64_t n_layers, const float *coeff, int64_t K,
                            const uint8_t *todo, const int64_t *work) {
    bn_ctx cx = {NULL, K, (uint8_t *)(intptr_t)work[0], (float *)(intptr_t)work[1],
                 (float *)(intptr_t)work[2], (float *)(intptr_t)work[3]};
#ifdef BN_HAVE_AVX2
    const int simd = use_simd && __builtin_cpu_supports("avx2");
#endif
    for (int64_t i = 0; i < n_layers; i++) {
        const int64_t *d = desc + i * D_N;
        if (!todo[i]) continue;
        cx.a = coeff + d[D_SLOT] * K;
#ifdef BN_HAVE_AVX2
        if (simd)
            layer_avx2(&cx, d);
        else
#endif
            layer_generic(&cx, d);
        write_channel_data(d, cx.buf, cx.scales);
    }
    return 0;
}

/* out[j] = sum_k a[k] * bases[k * n + j] for j < n, float32, in synthesis.mix's order (acc =
 * b_0 a_0, then acc = acc + b_k a_k), straight into `out` (the persistent specialist's kernel
 * input). In blocks of 4096 elements, each mixed over all K bases while it stays in cache. */
BN_EXPORT int bn_mix_f32(const float *bases, int64_t K, int64_t n, const float *a, float *out) {
#ifdef BN_HAVE_AVX2
    const int simd = use_simd && __builtin_cpu_supports("avx2");
#else
    const int simd = 0;
#endif
    for (int64_t at = 0; at < n; at += 4096) {
        const int64_t len = n - at < 4096 ? n - at : 4096;
        bn_mix x;
        x.b = (const void *)(bases + at);
        x.stride = n;
        x.m = a;
        x.m_stride = 1;
        x.m_vec = 0;
        x.K = K;
#ifdef BN_HAVE_AVX2
        if (simd)
            mix_block_avx2(&x, len, out + at);
        else
#endif
            mix_block(0, 0, &x, len, out + at);
    }
    return 0;
}

/* The descriptor width, so the Python side can check it builds rows of the right size. */
BN_EXPORT int bn_desc_fields(void) { return D_N; }

/* The arithmetic's version (2: the bias floor on weight scales; 3: int64 biases), so a stale
 * build is not used: fast_synthesis.KERNEL_VERSION must match. */
BN_EXPORT int bn_kernel_version(void) { return 3; }

/* A real (empty) CPython module, so setuptools builds and names it like any extension; the
 * kernel itself is reached through ctypes. */
static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_fastsynth",
                                       "Fused synthesis kernel; see fast_synthesis.py.", -1,
                                       NULL, NULL, NULL, NULL, NULL};
PyMODINIT_FUNC PyInit__fastsynth(void) { return PyModule_Create(&moduledef); }
