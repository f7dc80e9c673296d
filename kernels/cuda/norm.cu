/* LayerNorm, RMSNorm and L2 normalisation, forward and backward.
 *
 * Strategy: one warp per row (no shared memory, no block barriers). Lane l
 * handles columns 8l..8l+7, 8l+256.., so a warp step reads 256 neighbouring
 * elements with 16-byte loads where aligned. Row sums are accumulated in f64
 * per lane and combined with warp shuffles (in a fixed order: deterministic);
 * the row is re-read for each pass (a row of 4096 bf16 is 8 KB, served from
 * L1/L2 after the first pass). Mean and variance are two-pass.
 * Parameter gradients (dw, db) are column sums over rows: reduce.cu's
 * deterministic two-stage reduction, no atomics. */
#include "cuda_common.cuh"

enum { THREADS = 256, WARPS_PER_BLOCK = THREADS / 32 };

/* This warp's rows in a grid-stride loop. */
#define FOR_EACH_WARP_ROW(row, rows)                                                               \
    for (int64_t row = (int64_t)blockIdx.x * WARPS_PER_BLOCK + (threadIdx.x >> 5); row < (rows);   \
         row += (int64_t)gridDim.x * WARPS_PER_BLOCK)
/* This lane's groups of 8 columns within a row. */
#define FOR_EACH_LANE_COL8(c, cols)                                                                \
    for (int64_t c = (int64_t)(threadIdx.x & 31) * 8; c < (cols); c += 256)

struct row_io { /* a [rows, cols] float tensor: data and dtype */
    const void *p;
    dtype dt;
};
struct row_out {
    void *p;
    dtype dt;
};

static unsigned row_blocks(int64_t rows) { return grid_blocks(rows, WARPS_PER_BLOCK); }

/* Parameter vector v (or 1 / 0 when absent) for columns c..c+8. */
static __device__ __forceinline__ void load_param8(row_io v, int64_t c, int64_t cols, float fill,
                                                   float out[8]) {
    if (v.p) {
        load8(v.p, v.dt, c, cols, out);
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) out[k] = fill;
    }
}

/* ---- LayerNorm ---------------------------------------------------------- */

static __global__ void layernorm_kernel(row_out y, float *mean_out, float *rstd_out, row_io x,
                                        row_io w, row_io b, int64_t rows, int64_t cols, float eps) {
    FOR_EACH_WARP_ROW(row, rows) {
        const void *xr = row_ptr(x.p, x.dt, row, cols);
        double s = 0.0;
        FOR_EACH_LANE_COL8(c, cols) {
            float v[8];
            load8(xr, x.dt, c, cols, v); /* columns past the end read as 0 */
#pragma unroll
            for (int k = 0; k < 8; k++) s += v[k];
        }
        double mean = warp_sum(s) / (double)cols, ss = 0.0;
        FOR_EACH_LANE_COL8(c, cols) {
            float v[8];
            load8(xr, x.dt, c, cols, v);
#pragma unroll
            for (int k = 0; k < 8; k++)
                if (c + k < cols) ss += ((double)v[k] - mean) * ((double)v[k] - mean);
        }
        float mf = (float)mean, rf = (float)(1.0 / sqrt(warp_sum(ss) / (double)cols + (double)eps));
        void *yr = row_ptr_mut(y.p, y.dt, row, cols);
        FOR_EACH_LANE_COL8(c, cols) {
            float v[8], wv[8], bv[8];
            load8(xr, x.dt, c, cols, v);
            load_param8(w, c, cols, 1.0f, wv);
            load_param8(b, c, cols, 0.0f, bv);
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = (v[k] - mf) * rf * wv[k] + bv[k];
            store8(yr, y.dt, c, cols, v);
        }
        if ((threadIdx.x & 31) == 0) {
            if (mean_out) mean_out[row] = mf;
            if (rstd_out) rstd_out[row] = rf;
        }
    }
}

/* g = dy w, xhat = (x - mean) rstd:  dx = rstd (g - mean(g) - xhat mean(g xhat)). */
static __global__ void layernorm_backward_kernel(row_out dx, row_io dy, row_io x, row_io w,
                                                 const float *mean, const float *rstd, int64_t rows,
                                                 int64_t cols) {
    FOR_EACH_WARP_ROW(row, rows) {
        const void *dyr = row_ptr(dy.p, dy.dt, row, cols), *xr = row_ptr(x.p, x.dt, row, cols);
        float mu = mean[row], r = rstd[row];
        double sg = 0.0, sgx = 0.0;
        FOR_EACH_LANE_COL8(c, cols) {
            float g[8], v[8], wv[8];
            load8(dyr, dy.dt, c, cols, g);
            load8(xr, x.dt, c, cols, v);
            load_param8(w, c, cols, 1.0f, wv);
#pragma unroll
            for (int k = 0; k < 8; k++) { /* past the end: g = 0, so no masking needed */
                float gk = g[k] * wv[k];
                sg += gk;
                sgx += (double)gk * ((v[k] - mu) * r);
            }
        }
        float mg = (float)(warp_sum(sg) / (double)cols),
              mgx = (float)(warp_sum(sgx) / (double)cols);
        void *dxr = row_ptr_mut(dx.p, dx.dt, row, cols);
        FOR_EACH_LANE_COL8(c, cols) {
            float g[8], v[8], wv[8];
            load8(dyr, dy.dt, c, cols, g);
            load8(xr, x.dt, c, cols, v);
            load_param8(w, c, cols, 1.0f, wv);
#pragma unroll
            for (int k = 0; k < 8; k++) g[k] = r * (g[k] * wv[k] - mg - (v[k] - mu) * r * mgx);
            store8(dxr, dx.dt, c, cols, g);
        }
    }
}

static row_io in_of(const tensor *t) { return row_io{t ? t->data : NULL, t ? t->dt : DT_F32}; }
static row_out out_of(tensor *t) { return row_out{t->data, t->dt}; }

static void cuda_layernorm(tensor *y, tensor *mean, tensor *rstd, const tensor *x, const tensor *w,
                           const tensor *b, float eps) {
    int64_t cols = tensor_cols(x), rows = cols ? tensor_numel(x) / cols : 0;
    if (rows <= 0) return;
    layernorm_kernel<<<row_blocks(rows), THREADS, 0, cuda_stream()>>>(
        out_of(y), mean ? (float *)mean->data : NULL, rstd ? (float *)rstd->data : NULL, in_of(x),
        in_of(w), in_of(b), rows, cols, eps);
    CUDA_LAUNCH_CHECK();
}

static void cuda_layernorm_backward(tensor *dx, tensor *dw, tensor *db, const tensor *dy,
                                    const tensor *x, const tensor *w, const tensor *mean,
                                    const tensor *rstd) {
    int64_t cols = tensor_cols(x), rows = cols ? tensor_numel(x) / cols : 0;
    AIMC_CHECK(mean && rstd,
               "cuda layernorm_backward: mean and rstd from the forward are required");
    if (rows <= 0) return;
    const float *mu = (const float *)mean->data, *r = (const float *)rstd->data;
    /* parameter gradients first (same stream, so in order): dx may alias dy */
    if (dw)
        cuda_colsum(dw->data, dw->dt, 0.0f, COLSUM_LN_DW, dy->data, dy->dt, x->data, x->dt, mu, r,
                    rows, cols);
    if (db)
        cuda_colsum(db->data, db->dt, 0.0f, COLSUM_DY, dy->data, dy->dt, NULL, DT_F32, NULL, NULL,
                    rows, cols);
    if (dx) {
        layernorm_backward_kernel<<<row_blocks(rows), THREADS, 0, cuda_stream()>>>(
            out_of(dx), in_of(dy), in_of(x), in_of(w), mu, r, rows, cols);
        CUDA_LAUNCH_CHECK();
    }
}

/* ---- RMSNorm ------------------------------------------------------------ */

static __global__ void rmsnorm_kernel(row_out y, float *rstd_out, row_io x, row_io w, int64_t rows,
                                      int64_t cols, float eps) {
    FOR_EACH_WARP_ROW(row, rows) {
        const void *xr = row_ptr(x.p, x.dt, row, cols);
        double ss = 0.0;
        FOR_EACH_LANE_COL8(c, cols) {
            float v[8];
            load8(xr, x.dt, c, cols, v);
#pragma unroll
            for (int k = 0; k < 8; k++) ss += (double)v[k] * v[k];
        }
        float rf = (float)(1.0 / sqrt(warp_sum(ss) / (double)cols + (double)eps));
        void *yr = row_ptr_mut(y.p, y.dt, row, cols);
        FOR_EACH_LANE_COL8(c, cols) {
            float v[8], wv[8];
            load8(xr, x.dt, c, cols, v);
            load_param8(w, c, cols, 1.0f, wv);
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = v[k] * rf * wv[k];
            store8(yr, y.dt, c, cols, v);
        }
        if ((threadIdx.x & 31) == 0 && rstd_out) rstd_out[row] = rf;
    }
}

/* y = x r w, r = (mean(x^2) + eps)^-1/2:  dx = r (dy w - x r^2 mean(dy w x)). */
static __global__ void rmsnorm_backward_kernel(row_out dx, row_io dy, row_io x, row_io w,
                                               const float *rstd, int64_t rows, int64_t cols) {
    FOR_EACH_WARP_ROW(row, rows) {
        const void *dyr = row_ptr(dy.p, dy.dt, row, cols), *xr = row_ptr(x.p, x.dt, row, cols);
        float r = rstd[row];
        double s = 0.0;
        FOR_EACH_LANE_COL8(c, cols) {
            float g[8], v[8], wv[8];
            load8(dyr, dy.dt, c, cols, g);
            load8(xr, x.dt, c, cols, v);
            load_param8(w, c, cols, 1.0f, wv);
#pragma unroll
            for (int k = 0; k < 8; k++) s += (double)(g[k] * wv[k]) * v[k];
        }
        float m = (float)(warp_sum(s) / (double)cols) * r * r;
        void *dxr = row_ptr_mut(dx.p, dx.dt, row, cols);
        FOR_EACH_LANE_COL8(c, cols) {
            float g[8], v[8], wv[8];
            load8(dyr, dy.dt, c, cols, g);
            load8(xr, x.dt, c, cols, v);
            load_param8(w, c, cols, 1.0f, wv);
#pragma unroll
            for (int k = 0; k < 8; k++) g[k] = r * (g[k] * wv[k] - v[k] * m);
            store8(dxr, dx.dt, c, cols, g);
        }
    }
}

static void cuda_rmsnorm(tensor *y, tensor *rstd, const tensor *x, const tensor *w, float eps) {
    int64_t cols = tensor_cols(x), rows = cols ? tensor_numel(x) / cols : 0;
    if (rows <= 0) return;
    rmsnorm_kernel<<<row_blocks(rows), THREADS, 0, cuda_stream()>>>(
        out_of(y), rstd ? (float *)rstd->data : NULL, in_of(x), in_of(w), rows, cols, eps);
    CUDA_LAUNCH_CHECK();
}

static void cuda_rmsnorm_backward(tensor *dx, tensor *dw, const tensor *dy, const tensor *x,
                                  const tensor *w, const tensor *rstd) {
    int64_t cols = tensor_cols(x), rows = cols ? tensor_numel(x) / cols : 0;
    AIMC_CHECK(rstd, "cuda rmsnorm_backward: rstd from the forward is required");
    if (rows <= 0) return;
    const float *r = (const float *)rstd->data;
    if (dw) /* first: dx may alias dy */
        cuda_colsum(dw->data, dw->dt, 0.0f, COLSUM_RMS_DW, dy->data, dy->dt, x->data, x->dt, NULL,
                    r, rows, cols);
    if (dx) {
        rmsnorm_backward_kernel<<<row_blocks(rows), THREADS, 0, cuda_stream()>>>(
            out_of(dx), in_of(dy), in_of(x), in_of(w), r, rows, cols);
        CUDA_LAUNCH_CHECK();
    }
}

/* ---- L2 normalisation ----------------------------------------------------- */

/* Like torch's F.normalize: the norm is clamped below so a zero row maps to 0. */
#define L2NORM_MIN 1e-12

static __global__ void l2norm_kernel(row_out y, float *rnorm, row_io x, int64_t rows,
                                     int64_t cols) {
    FOR_EACH_WARP_ROW(row, rows) {
        const void *xr = row_ptr(x.p, x.dt, row, cols);
        double ss = 0.0;
        FOR_EACH_LANE_COL8(c, cols) {
            float v[8];
            load8(xr, x.dt, c, cols, v);
#pragma unroll
            for (int k = 0; k < 8; k++) ss += (double)v[k] * v[k];
        }
        double r = 1.0 / fmax(sqrt(warp_sum(ss)), L2NORM_MIN);
        void *yr = row_ptr_mut(y.p, y.dt, row, cols);
        FOR_EACH_LANE_COL8(c, cols) {
            float v[8];
            load8(xr, x.dt, c, cols, v);
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = (float)(v[k] * r);
            store8(yr, y.dt, c, cols, v);
        }
        if ((threadIdx.x & 31) == 0) rnorm[row] = (float)r;
    }
}

/* y = x / |x|:  dx = (dy - y (y . dy)) / |x|. */
static __global__ void l2norm_backward_kernel(row_out dx, row_io dy, row_io y, const float *rnorm,
                                              int64_t rows, int64_t cols) {
    FOR_EACH_WARP_ROW(row, rows) {
        const void *dyr = row_ptr(dy.p, dy.dt, row, cols), *yr = row_ptr(y.p, y.dt, row, cols);
        double s = 0.0;
        FOR_EACH_LANE_COL8(c, cols) {
            float g[8], v[8];
            load8(dyr, dy.dt, c, cols, g);
            load8(yr, y.dt, c, cols, v);
#pragma unroll
            for (int k = 0; k < 8; k++) s += (double)v[k] * g[k];
        }
        double ydy = warp_sum(s), rn = rnorm[row];
        void *dxr = row_ptr_mut(dx.p, dx.dt, row, cols);
        FOR_EACH_LANE_COL8(c, cols) {
            float g[8], v[8];
            load8(dyr, dy.dt, c, cols, g);
            load8(yr, y.dt, c, cols, v);
#pragma unroll
            for (int k = 0; k < 8; k++) g[k] = (float)(((double)g[k] - (double)v[k] * ydy) * rn);
            store8(dxr, dx.dt, c, cols, g);
        }
    }
}

static void cuda_l2norm(tensor *y, tensor *rnorm, const tensor *x) {
    int64_t cols = tensor_cols(x), rows = cols ? tensor_numel(x) / cols : 0;
    if (rows <= 0) return;
    l2norm_kernel<<<row_blocks(rows), THREADS, 0, cuda_stream()>>>(out_of(y), (float *)rnorm->data,
                                                                   in_of(x), rows, cols);
    CUDA_LAUNCH_CHECK();
}

static void cuda_l2norm_backward(tensor *dx, const tensor *dy, const tensor *y,
                                 const tensor *rnorm) {
    int64_t cols = tensor_cols(y), rows = cols ? tensor_numel(y) / cols : 0;
    if (rows <= 0) return;
    l2norm_backward_kernel<<<row_blocks(rows), THREADS, 0, cuda_stream()>>>(
        out_of(dx), in_of(dy), in_of(y), (const float *)rnorm->data, rows, cols);
    CUDA_LAUNCH_CHECK();
}

void cuda_fill_norm(backend *b) {
    b->layernorm = cuda_layernorm;
    b->layernorm_backward = cuda_layernorm_backward;
    b->rmsnorm = cuda_rmsnorm;
    b->rmsnorm_backward = cuda_rmsnorm_backward;
    b->l2norm = cuda_l2norm;
    b->l2norm_backward = cuda_l2norm_backward;
}
