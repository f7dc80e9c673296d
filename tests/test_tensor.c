/* bf16 / f16 conversions (kernels/tensor.h, host/tensor.c) and op_convert
 * against decoders and a round-to-nearest-even reference written here in
 * float64; tensor views (slice0, reshape); the arena. */
#include "../host/arena.h"
#include "../host/ops.h"
#include "testlib.h"
#include <float.h>

/* A 16-bit float format: sign, exp_bits exponent, man_bits fraction. */
typedef struct fmt16 {
    const char *name;
    int exp_bits, man_bits;
    float (*to_f32)(uint16_t);
    uint16_t (*from_f32)(float);
} fmt16;

static float bf16_decode_fn(uint16_t h) { return bf16_to_f32(h); }
static uint16_t bf16_encode_fn(float f) { return f32_to_bf16(f); }
static const fmt16 BF16 = {"bf16", 8, 7, bf16_decode_fn, bf16_encode_fn};
static const fmt16 F16 = {"f16", 5, 10, f16_to_f32, f32_to_f16};

static int fmt_bias(const fmt16 *f) { return (1 << (f->exp_bits - 1)) - 1; }

/* ---- float64 references ---- */

static double ref_decode(const fmt16 *f, uint16_t h) {
    int e = (h >> f->man_bits) & ((1 << f->exp_bits) - 1), man = h & ((1 << f->man_bits) - 1);
    double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (e == (1 << f->exp_bits) - 1) return man ? NAN : sign * INFINITY;
    if (e == 0) return sign * ldexp(man, 1 - fmt_bias(f) - f->man_bits);
    return sign * ldexp(man + (1 << f->man_bits), e - fmt_bias(f) - f->man_bits);
}

/* x rounded to the format, nearest even, with overflow to +-inf. */
static double ref_round(const fmt16 *f, double x) {
    if (x == 0 || !isfinite(x)) return x;
    int e, emin = 1 - fmt_bias(f);
    frexp(fabs(x), &e);
    int exponent = e - 1 < emin ? emin : e - 1; /* subnormals share the smallest spacing */
    double spacing = ldexp(1.0, exponent - f->man_bits);
    double r = rint(x / spacing) * spacing; /* x / spacing is exact; rint ties to even */
    return fabs(r) >= ldexp(1.0, fmt_bias(f) + 1) ? copysign(INFINITY, x) : r;
}

/* Bits of v, which must be representable in the format. */
static uint16_t ref_encode(const fmt16 *f, double v) {
    uint16_t sign = signbit(v) ? 0x8000 : 0, inf_exp = (uint16_t)((1 << f->exp_bits) - 1);
    int bias = fmt_bias(f), e;
    v = fabs(v);
    if (isinf(v)) return sign | (uint16_t)(inf_exp << f->man_bits);
    if (v == 0) return sign;
    frexp(v, &e);
    if (e - 1 < 1 - bias) return sign | (uint16_t)ldexp(v, bias - 1 + f->man_bits);
    uint16_t man = (uint16_t)((ldexp(v, -(e - 1)) - 1.0) * (1 << f->man_bits));
    return sign | (uint16_t)((e - 1 + bias) << f->man_bits) | man;
}

static int is_nan16(const fmt16 *f, uint16_t h) { return isnan(ref_decode(f, h)); }

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* ---- conversion checks ---- */

/* Every 16-bit pattern: decoding matches, and f32 -> 16 bit gives it back. */
static void check_exhaustive(const fmt16 *f) {
    int64_t bad_decode = 0, bad_trip = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        double want = ref_decode(f, (uint16_t)h);
        float got = f->to_f32((uint16_t)h);
        if (isnan(want) ? !isnan(got) : (double)got != want || !signbit(got) != !signbit(want))
            bad_decode++;
        uint16_t back = f->from_f32(got);
        if (isnan(want) ? !is_nan16(f, back) : back != h) bad_trip++;
    }
    CHECK(bad_decode == 0, "%s -> f32: %lld of 65536 patterns decode wrongly", f->name,
          (long long)bad_decode);
    CHECK(bad_trip == 0, "%s -> f32 -> %s: %lld of 65536 patterns change", f->name, f->name,
          (long long)bad_trip);
}

/* For every pair of neighbours (h, h+1): their midpoint rounds to the even
 * one, the floats just below / above it to h / h+1. */
static void check_ties(const fmt16 *f) {
    int64_t bad = 0, checked = 0;
    uint16_t inf_bits = (uint16_t)(((1 << f->exp_bits) - 1) << f->man_bits);
    for (uint32_t sign = 0; sign < 2; sign++)
        for (uint16_t h = 0; h < inf_bits; h++) {
            uint16_t hs = (uint16_t)(h | sign << 15), hs1 = (uint16_t)((h + 1) | sign << 15);
            double lo = ref_decode(f, hs), hi = h + 1 == inf_bits
                                                    ? copysign(ldexp(1.0, fmt_bias(f) + 1), lo)
                                                    : ref_decode(f, hs1);
            float mid = (float)((lo + hi) / 2); /* exact: one bit more than the format */
            uint16_t even = (h & 1) ? hs1 : hs;
            float below = nextafterf(mid, (float)lo), above = nextafterf(mid, (float)hi);
            bad += f->from_f32(mid) != even;
            bad += f->from_f32(below) != hs;
            bad += f->from_f32(above) != hs1;
            checked += 3;
        }
    CHECK(bad == 0, "f32 -> %s at the %lld midpoints and their neighbours: %lld wrong", f->name,
          (long long)checked, (long long)bad);
}

/* Random f32 bit patterns (all exponents, NaNs and subnormals included)
 * against ref_round + ref_encode. */
static void check_random_f32(const fmt16 *f, int64_t count) {
    int64_t bad = 0, lo = 127 - fmt_bias(f) - 12, hi = 127 + fmt_bias(f) + 3; /* f32 exponents */
    if (lo < 1) lo = 1;
    if (hi > 254) hi = 254;
    for (int64_t i = 0; i < count; i++) {
        uint32_t u = (uint32_t)rng_u64();
        if (i % 2) /* half of them in (and a little around) the format's own range */
            u = (u & 0x807fffffu) | (uint32_t)(lo + rng_int(hi - lo + 1)) << 23;
        float x = bits_f32(u);
        uint16_t got = f->from_f32(x);
        if (isnan(x))
            bad += !is_nan16(f, got);
        else
            bad += got != ref_encode(f, ref_round(f, x));
    }
    CHECK(bad == 0, "f32 -> %s on %lld random patterns: %lld differ from the float64 reference",
          f->name, (long long)count, (long long)bad);
}

static void check_specials(void) {
    /* signalling NaN payload in the low bits only: truncation would give inf */
    CHECK(is_nan16(&BF16, f32_to_bf16(bits_f32(0x7f800001u))), "bf16(sNaN 0x7f800001) is not NaN");
    CHECK(is_nan16(&BF16, f32_to_bf16(bits_f32(0xff800001u))), "bf16(-sNaN) is not NaN");
    CHECK(is_nan16(&F16, f32_to_f16(bits_f32(0x7f800001u))), "f16(sNaN 0x7f800001) is not NaN");
    CHECK(f32_to_bf16(INFINITY) == 0x7f80 && f32_to_bf16(-INFINITY) == 0xff80, "bf16(+-inf)");
    CHECK(f32_to_f16(INFINITY) == 0x7c00 && f32_to_f16(-INFINITY) == 0xfc00, "f16(+-inf)");
    CHECK(f32_to_bf16(FLT_MAX) == 0x7f80, "bf16(FLT_MAX) = 0x%04x, want inf 0x7f80",
          f32_to_bf16(FLT_MAX));
    CHECK(f32_to_f16(65504.0f) == 0x7bff && f32_to_f16(65519.996f) == 0x7bff,
          "f16(65504), f16(65519.996) should be the max 0x7bff");
    CHECK(f32_to_f16(65520.0f) == 0x7c00 && f32_to_f16(-1e10f) == 0xfc00, "f16 overflow to inf");
    CHECK(f32_to_f16(ldexpf(1, -24)) == 0x0001 && f32_to_f16(ldexpf(1, -25)) == 0x0000 &&
              f32_to_f16(3 * ldexpf(1, -25)) == 0x0002 && f32_to_f16(-ldexpf(1, -26)) == 0x8000,
          "f16 subnormal rounding (2^-24, 2^-25 tie to 0, 3*2^-25 tie to 2*2^-24, -2^-26)");
    CHECK(f32_to_f16(FLT_MIN) == 0 && f32_to_bf16(FLT_MIN) == 0x0080 &&
              f32_to_bf16(bits_f32(0x00000001u)) == 0x0000 && f32_to_bf16(-0.0f) == 0x8000,
          "tiny values: f16(FLT_MIN), bf16(FLT_MIN), bf16(smallest subnormal), bf16(-0)");
    CHECK(f16_to_f32(0x0001) == ldexpf(1, -24) && f16_to_f32(0x03ff) == ldexpf(1023, -24) &&
              f16_to_f32(0x7bff) == 65504.0f && isnan(f16_to_f32(0x7c01)),
          "f16 decode of subnormals, max and NaN");
}

/* ---- op_convert ---- */

static void *alloc_random(dtype dt, int64_t n) {
    void *p = tl_alloc((size_t)n * dtype_size(dt));
    for (int64_t i = 0; i < n; i++) {
        float v = (float)(rng_normal() * pow(10.0, (double)rng_int(9) - 4)); /* 1e-4 .. 1e4 */
        if (dt == DT_I32)
            ((int32_t *)p)[i] = (int32_t)rng_u64();
        else
            store_from_f32(p, dt, i, v);
    }
    return p;
}

static double ref_value(const void *p, dtype dt, int64_t i) {
    if (dt == DT_BF16) return ref_decode(&BF16, ((const uint16_t *)p)[i]);
    if (dt == DT_F16) return ref_decode(&F16, ((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

/* The expected stored value of element i after conversion, as bits. */
static uint32_t expected_bits(const void *src, dtype sdt, dtype ddt, int64_t i) {
    if (sdt == DT_I32) return (uint32_t)((const int32_t *)src)[i];
    double v = ref_value(src, sdt, i);
    if (ddt == DT_BF16) return ref_encode(&BF16, ref_round(&BF16, v));
    if (ddt == DT_F16) return ref_encode(&F16, ref_round(&F16, v));
    float f = (float)v; /* exact: every source value is an f32 */
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint32_t stored_bits(const void *p, dtype dt, int64_t i) {
    if (dtype_size(dt) == 2) return ((const uint16_t *)p)[i];
    return ((const uint32_t *)p)[i];
}

static void check_convert(dtype sdt, dtype ddt, int64_t n) {
    const backend *be = backend_cpu();
    void *src = alloc_random(sdt, n), *dst = tl_alloc((size_t)n * dtype_size(ddt));
    memset(dst, 0xff, (size_t)n * dtype_size(ddt)); /* NaN in every float type */
    tensor ts = tensor_wrap(src, sdt, be, 2, (int64_t[]){n, 1});
    tensor td = tensor_wrap(dst, ddt, be, 1, (int64_t[]){n});
    op_convert(&td, &ts);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += stored_bits(dst, ddt, i) != expected_bits(src, sdt, ddt, i);
    CHECK(bad == 0, "convert %s -> %s, n=%lld: %lld wrong", dtype_name(sdt), dtype_name(ddt),
          (long long)n, (long long)bad);
    free(src), free(dst);
}

/* ---- views ---- */

static void check_views(void) {
    float data[5 * 3 * 2];
    const backend *be = backend_cpu();
    tensor t = tensor_wrap(data, DT_F32, be, 3, (int64_t[]){5, 3, 2});
    char buf[64];
    CHECK(tensor_numel(&t) == 30 && tensor_bytes(&t) == 120 && tensor_cols(&t) == 2 &&
              tensor_rows_count(&t) == 15,
          "numel/bytes/cols/rows of [5, 3, 2] f32");
    CHECK(!strcmp(tensor_shape_str(&t, buf, sizeof buf), "[5, 3, 2]"), "shape string '%s'", buf);
    tensor s = tensor_slice0(&t, 2, 2);
    CHECK(s.data == (char *)data + 2 * 6 * 4 && s.ndim == 3 && s.shape[0] == 2 && s.shape[1] == 3 &&
              s.shape[2] == 2 && s.dt == DT_F32 && s.be == be,
          "slice0 rows [2, 4) of [5, 3, 2]");
    tensor e = tensor_slice0(&t, 5, 0);
    CHECK(tensor_numel(&e) == 0 && e.shape[0] == 0, "empty slice0 at the end");
    uint16_t h[4 * 6];
    tensor tb = tensor_wrap(h, DT_BF16, be, 2, (int64_t[]){4, 6});
    tensor sb = tensor_slice0(&tb, 1, 3);
    CHECK(sb.data == (char *)h + 12 && sb.shape[0] == 3 && tensor_bytes(&sb) == 36,
          "slice0 of a bf16 [4, 6]: offset 12 bytes");
    tensor r = tensor_reshape(&t, 2, (int64_t[]){15, 2});
    CHECK(r.data == data && r.ndim == 2 && r.shape[0] == 15 && r.shape[1] == 2 && r.dt == DT_F32,
          "reshape [5, 3, 2] -> [15, 2]");
    CHECK(tensor_same_shape(&r, &r) && !tensor_same_shape(&r, &t), "tensor_same_shape");
    CHECK(dtype_size(DT_BF16) == 2 && dtype_size(DT_I32) == 4 && !strcmp(dtype_name(DT_F16), "f16"),
          "dtype sizes and names");
}

static void check_arena(void) {
    arena a;
    arena_init(&a, backend_cpu(), 4096);
    tensor t1 = arena_new(&a, DT_F32, 10, 10), t2 = arena_new(&a, DT_BF16, 3);
    CHECK(t1.data == a.base && (char *)t2.data == a.base + 512 && ((uintptr_t)t2.data % 64) == 0,
          "arena: 400 bytes take a 512-byte slot (256-byte steps), tensors stay 64-byte aligned");
    CHECK(t1.ndim == 2 && t1.shape[1] == 10 && t2.dt == DT_BF16 && t2.be == backend_cpu(),
          "arena tensor shape and owner");
    size_t peak = a.peak;
    arena_reset(&a);
    tensor t3 = arena_new(&a, DT_F32, 4);
    CHECK(t3.data == a.base && a.used == 256 && a.peak == peak && peak == 768,
          "arena_reset reuses memory and keeps the peak (peak %zu)", a.peak);
    arena_free(&a);
}

/* ---- errors (in a child process: they exit) ---- */

static void arena_overflow(void) {
    arena a;
    arena_init(&a, backend_cpu(), 1024);
    arena_new(&a, DT_F32, 100);
    arena_new(&a, DT_F32, 300);
}

static void slice_past_end(void) {
    float d[10];
    tensor t = tensor_wrap(d, DT_F32, backend_cpu(), 2, (int64_t[]){5, 2});
    tensor_slice0(&t, 4, 2);
}

static void reshape_changes_numel(void) {
    float d[10];
    tensor t = tensor_wrap(d, DT_F32, backend_cpu(), 2, (int64_t[]){5, 2});
    tensor_reshape(&t, 2, (int64_t[]){3, 3});
}

static void convert_i32_to_f32(void) {
    int32_t s[3] = {1, 2, 3};
    float d[3];
    tensor ts = tensor_wrap(s, DT_I32, backend_cpu(), 1, (int64_t[]){3});
    tensor td = tensor_wrap(d, DT_F32, backend_cpu(), 1, (int64_t[]){3});
    op_convert(&td, &ts);
}

static void check_errors(void) {
    char msg[512];
    int rc = tl_run_child(arena_overflow, msg, sizeof msg);
    CHECK(rc == 1 && strstr(msg, "arena full") && strstr(msg, "1280 more bytes") &&
              strstr(msg, "1024"),
          "arena exhaustion: exit %d, '%s'", rc, msg);
    EXPECT_DIES(slice_past_end, 1, "rows [4, 6) outside dim 0 of size 5");
    EXPECT_DIES(reshape_changes_numel, 1, "[5, 2] -> [3, 3] changes numel");
    EXPECT_DIES(convert_i32_to_f32, 1, "convert: dst has dtype f32, expected i32");
}

int main(void) {
    tests_begin("test_tensor");
    check_exhaustive(&BF16);
    check_exhaustive(&F16);
    check_ties(&BF16);
    check_ties(&F16);
    check_random_f32(&BF16, 1 << 21);
    check_random_f32(&F16, 1 << 21);
    check_specials();
    static const dtype float_types[] = {DT_F32, DT_BF16, DT_F16};
    static const int64_t sizes[] = {1, 7, 40000};
    for (int s = 0; s < 3; s++)
        for (int d = 0; d < 3; d++)
            for (int n = 0; n < 3; n++) check_convert(float_types[s], float_types[d], sizes[n]);
    check_convert(DT_I32, DT_I32, 1000);
    check_views();
    check_arena();
    check_errors();
    return tests_done();
}
