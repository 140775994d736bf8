/* y[m, n] = sum_k x[m, k] * w[n, k] with x fp32 [M, K] and w bf16 [N, K] (raw uint16 bits), y fp32.
 *
 * The CPU home's matrix products read bf16 weights directly: each weight row is widened to fp32 in
 * registers (a bf16 value is the top half of an fp32 one) and multiplied into up to ROWS activation rows
 * at once, accumulating in fp32. Weight bytes are read once per block of ROWS activation rows, so
 * matrix-vector products run at memory bandwidth and few-row products at FMA rate, on AVX2 machines
 * where torch's bf16 kernels are several times slower. Output rows of w are split across OpenMP threads.
 */
#include <immintrin.h>
#include <stdint.h>

#define ROWS 8

static inline __m256 widen(const uint16_t *p) {
    __m128i half = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

static void row_block(const float *x, int64_t rows, const uint16_t *w, int64_t k, float *y, int64_t n, int64_t col) {
    __m256 acc[ROWS];
    for (int r = 0; r < ROWS; r++) acc[r] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= k; j += 8) {
        __m256 wv = widen(w + j);
        for (int r = 0; r < ROWS; r++)
            if (r < rows) acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + r * k + j), acc[r]);
    }
    for (int r = 0; r < rows; r++) {
        float total = hsum(acc[r]);
        for (int64_t t = j; t < k; t++) {
            uint32_t bits = (uint32_t)w[t] << 16;
            float wt;
            __builtin_memcpy(&wt, &bits, sizeof wt);
            total += wt * x[r * k + t];
        }
        y[r * n + col] = total;
    }
}

/* One activation row: four independent accumulators hide the FMA latency, so the loop runs at the rate
 * the weight row streams in from memory. */
static float dot_row(const float *x, const uint16_t *w, int64_t k) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= k; j += 32) {
        a0 = _mm256_fmadd_ps(widen(w + j), _mm256_loadu_ps(x + j), a0);
        a1 = _mm256_fmadd_ps(widen(w + j + 8), _mm256_loadu_ps(x + j + 8), a1);
        a2 = _mm256_fmadd_ps(widen(w + j + 16), _mm256_loadu_ps(x + j + 16), a2);
        a3 = _mm256_fmadd_ps(widen(w + j + 24), _mm256_loadu_ps(x + j + 24), a3);
    }
    float total = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; j < k; j++) {
        uint32_t bits = (uint32_t)w[j] << 16;
        float wt;
        __builtin_memcpy(&wt, &bits, sizeof wt);
        total += wt * x[j];
    }
    return total;
}

/* One activation row against four weight rows: each x vector is loaded once for four products. The next
 * four rows are prefetched a cache line at a time (callers walk quads in order; a prefetch past the end of
 * the weight is harmless): with four concurrent streams the hardware prefetcher alone left ~12% of this
 * machine's read bandwidth unused (measured on 1 GiB matrix-vector products, interleaved runs). */
static void dot_four(const float *x, const uint16_t *w, int64_t k, float *y) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= k; j += 8) {
        if ((j & 31) == 0)
            for (int r = 4; r < 8; r++) _mm_prefetch((const char *)(w + r * k + j), _MM_HINT_T0);
        __m256 xv = _mm256_loadu_ps(x + j);
        a0 = _mm256_fmadd_ps(widen(w + j), xv, a0);
        a1 = _mm256_fmadd_ps(widen(w + k + j), xv, a1);
        a2 = _mm256_fmadd_ps(widen(w + 2 * k + j), xv, a2);
        a3 = _mm256_fmadd_ps(widen(w + 3 * k + j), xv, a3);
    }
    if (j < k) {
        for (int r = 0; r < 4; r++) y[r] = dot_row(x, w + r * k, k);
        return;
    }
    y[0] = hsum(a0), y[1] = hsum(a1), y[2] = hsum(a2), y[3] = hsum(a3);
}

void bf16_gemv_multi(const float *x, int64_t x_stride, int64_t k, const uint16_t *const *ws, const int64_t *ns,
                     int64_t count, float *y, int threads);

void bf16_matmul(const float *x, int64_t m, int64_t k, const uint16_t *w, int64_t n, float *y, int threads) {
    if (m == 1) {
        bf16_gemv_multi(x, 0, k, &w, &n, 1, y, threads);
        return;
    }
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t col = 0; col < n; col++) {
        for (int64_t r0 = 0; r0 < m; r0 += ROWS) {
            int64_t rows = m - r0 < ROWS ? m - r0 : ROWS;
            row_block(x + r0 * k, rows, w + col * k, k, y + r0 * n, n, col);
        }
    }
}

/* Several matrix-vector products in one parallel region: y_i = w_i x_i for count weights w_i [n_i, k]
 * (rows of x_i at x + i * x_stride; x_stride 0 shares one x), outputs concatenated in y. One fork for
 * all of them, and the threads share the work across weights. */
void bf16_gemv_multi(const float *x, int64_t x_stride, int64_t k, const uint16_t *const *ws, const int64_t *ns,
                     int64_t count, float *y, int threads) {
    int64_t offsets[count + 1], quad_start[count + 1];
    offsets[0] = quad_start[0] = 0;
    for (int64_t i = 0; i < count; i++) {
        offsets[i + 1] = offsets[i] + ns[i];
        quad_start[i + 1] = quad_start[i] + (ns[i] + 3) / 4;
    }
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t q = 0; q < quad_start[count]; q++) {
        int64_t i = 0;
        while (q >= quad_start[i + 1]) i++;
        int64_t col = 4 * (q - quad_start[i]);
        const float *xi = x + i * x_stride;
        if (col + 4 <= ns[i]) {
            dot_four(xi, ws[i] + col * k, k, y + offsets[i] + col);
        } else {
            for (; col < ns[i]; col++) y[offsets[i] + col] = dot_row(xi, ws[i] + col * k, k);
        }
    }
}
