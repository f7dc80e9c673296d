/* The trainable AIM projector (types, initialisation and accumulation rules
 * in projector.h). */
#include "projector.h"
#include "../kernels/check.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[PROJ_TYPE_COUNT] = {"linear", "linear_ln", "mlp"};

const char *projector_type_name(projector_type type) {
    return (unsigned)type < PROJ_TYPE_COUNT ? type_names[type] : "?";
}

int projector_type_parse(const char *name) {
    for (int i = 0; i < PROJ_TYPE_COUNT; i++)
        if (!strcmp(name, type_names[i])) return i;
    if (!strcmp(name, "linear+layernorm") || !strcmp(name, "linear+ln")) return PROJ_LINEAR_LN;
    return -1;
}

static int64_t hidden_size(const projector_config *cfg) {
    return cfg->d_hidden > 0 ? cfg->d_hidden : cfg->d_out;
}

const char *projector_config_check(const projector_config *cfg, char *err, size_t errlen) {
    if ((unsigned)cfg->type >= PROJ_TYPE_COUNT)
        snprintf(err, errlen, "projector type %d is not linear, linear_ln or mlp", (int)cfg->type);
    else if (cfg->d_in <= 0 || cfg->d_out <= 0)
        snprintf(err, errlen, "projector sizes d_in = %lld, d_out = %lld must be > 0",
                 (long long)cfg->d_in, (long long)cfg->d_out);
    else if (cfg->type == PROJ_MLP && cfg->d_hidden < 0)
        snprintf(err, errlen, "projector d_hidden = %lld must be >= 0 (0: d_out)",
                 (long long)cfg->d_hidden);
    else if (cfg->type == PROJ_LINEAR_LN && !(isfinite(cfg->ln_eps) && cfg->ln_eps > 0))
        snprintf(err, errlen, "projector ln_eps = %g must be finite and > 0", (double)cfg->ln_eps);
    else
        return NULL;
    return err;
}

/* The shortest %g text that reads back as the same float (1e-05, not 9.99999975e-06). */
static void shortest_float(float v, char *buf, size_t n) {
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, n, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
}

const char *projector_describe(const projector_config *cfg, char *buf, size_t n) {
    int k;
    char eps[32];
    shortest_float(cfg->ln_eps, eps, sizeof eps);
    if (cfg->type == PROJ_MLP)
        k = snprintf(buf, n, "type=mlp d_in=%lld d_hidden=%lld d_out=%lld", (long long)cfg->d_in,
                     (long long)hidden_size(cfg), (long long)cfg->d_out);
    else if (cfg->type == PROJ_LINEAR_LN)
        k = snprintf(buf, n, "type=linear_ln d_in=%lld d_out=%lld ln_eps=%s", (long long)cfg->d_in,
                     (long long)cfg->d_out, eps);
    else
        k = snprintf(buf, n, "type=%s d_in=%lld d_out=%lld", projector_type_name(cfg->type),
                     (long long)cfg->d_in, (long long)cfg->d_out);
    AIMC_CHECK(k >= 0 && (size_t)k < n, "projector_describe: %zu-byte buffer too small", n);
    return buf;
}

/* One "key=value" word of a description into cfg; 0 or -1 with err set. */
static int parse_field(const char *key, const char *val, projector_config *cfg, char *err,
                       size_t errlen) {
    char *end;
    errno = 0;
    if (!strcmp(key, "type")) {
        int t = projector_type_parse(val);
        if (t < 0) return snprintf(err, errlen, "unknown projector type '%s'", val), -1;
        cfg->type = (projector_type)t;
        return 0;
    }
    if (!strcmp(key, "ln_eps")) {
        cfg->ln_eps = strtof(val, &end);
    } else {
        long long v = strtoll(val, &end, 10);
        if (!strcmp(key, "d_in")) cfg->d_in = v;
        else if (!strcmp(key, "d_out")) cfg->d_out = v;
        else if (!strcmp(key, "d_hidden")) cfg->d_hidden = v;
        else return snprintf(err, errlen, "unknown projector field '%s'", key), -1;
    }
    if (errno || end == val || *end)
        return snprintf(err, errlen, "projector field %s has a bad value '%s'", key, val), -1;
    return 0;
}

int projector_config_parse(const char *text, projector_config *cfg, char *err, size_t errlen) {
    projector_config c = {.type = PROJ_TYPE_COUNT, .ln_eps = 1e-5f};
    char word[128];
    for (const char *s = text; *s;) {
        size_t len = strcspn(s, " \t\n");
        if (len >= sizeof word)
            return snprintf(err, errlen, "projector description has a %zu-byte word", len), -1;
        memcpy(word, s, len);
        word[len] = 0;
        s += len + strspn(s + len, " \t\n");
        if (!len) continue;
        char *eq = strchr(word, '=');
        if (!eq) return snprintf(err, errlen, "projector description word '%s' has no '='", word), -1;
        *eq = 0;
        if (parse_field(word, eq + 1, &c, err, errlen)) return -1;
    }
    if (projector_config_check(&c, err, errlen)) return -1;
    *cfg = c;
    return 0;
}

/* ---- parameters ---------------------------------------------------------- */

typedef struct splitmix {
    uint64_t s;
} splitmix;

static uint64_t splitmix_next(splitmix *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* U(-bound, bound) with 24 random bits, as documented in projector.h. */
static float uniform_sym(splitmix *r, double bound) {
    double u = (double)(splitmix_next(r) >> 40) / 16777216.0;
    return (float)(bound * (2.0 * u - 1.0));
}

tensor projector_alloc_f32(const backend *be, int ndim, const int64_t *shape) {
    tensor t = tensor_wrap(NULL, DT_F32, be, ndim, shape);
    size_t bytes = tensor_bytes(&t);
    t.data = be->alloc(bytes ? bytes : 4);
    AIMC_CHECK(t.data != NULL, "projector: %s alloc of %zu bytes failed", be->name, bytes);
    be->zero(t.data, bytes);
    return t;
}

/* Fills t from the generator (bound > 0) or with a constant (bound == 0). */
static void init_values(tensor *t, splitmix *r, double bound, float constant) {
    int64_t n = tensor_numel(t);
    float *host = malloc((size_t)(n ? n : 1) * sizeof *host);
    AIMC_CHECK(host != NULL, "projector: out of host memory (%lld floats)", (long long)n);
    for (int64_t i = 0; i < n; i++) host[i] = bound > 0 ? uniform_sym(r, bound) : constant;
    t->be->upload(t->data, host, (size_t)n * sizeof *host);
    free(host);
}

projector_param *projector_add_param(projector *p, const char *name, int ndim, const int64_t *shape,
                                     int decay) {
    AIMC_CHECK(p->n_params < PROJECTOR_MAX_PARAMS, "projector: too many parameters");
    projector_param *pp = &p->params[p->n_params++];
    snprintf(pp->name, sizeof pp->name, "%s", name);
    pp->value = projector_alloc_f32(p->be, ndim, shape);
    pp->grad = projector_alloc_f32(p->be, ndim, shape);
    pp->m = projector_alloc_f32(p->be, ndim, shape);
    pp->v = projector_alloc_f32(p->be, ndim, shape);
    pp->decay = decay;
    return pp;
}

/* "<prefix>.weight" [out, in] and "<prefix>.bias" [out], torch's default init. */
static void add_linear(projector *p, splitmix *r, const char *prefix, int64_t in, int64_t out) {
    char name[PROJECTOR_NAME_MAX];
    double bound = 1.0 / sqrt((double)in);
    snprintf(name, sizeof name, "%s.weight", prefix);
    init_values(&projector_add_param(p, name, 2, (int64_t[]){out, in}, 1)->value, r, bound, 0);
    snprintf(name, sizeof name, "%s.bias", prefix);
    init_values(&projector_add_param(p, name, 1, (int64_t[]){out}, 0)->value, r, bound, 0);
}

static void add_layernorm(projector *p, const char *prefix, int64_t dim) {
    char name[PROJECTOR_NAME_MAX];
    snprintf(name, sizeof name, "%s.weight", prefix);
    init_values(&projector_add_param(p, name, 1, (int64_t[]){dim}, 0)->value, NULL, 0, 1.0f);
    snprintf(name, sizeof name, "%s.bias", prefix);
    init_values(&projector_add_param(p, name, 1, (int64_t[]){dim}, 0)->value, NULL, 0, 0.0f);
}

void projector_init(projector *p, const backend *be, const projector_config *cfg) {
    char err[256];
    AIMC_CHECK(!projector_config_check(cfg, err, sizeof err), "projector_init: %s", err);
    memset(p, 0, sizeof *p);
    p->cfg = *cfg;
    p->be = be;
    splitmix r = {cfg->seed};
    if (cfg->type == PROJ_MLP) {
        add_linear(p, &r, "fc1", cfg->d_in, hidden_size(cfg));
        add_linear(p, &r, "fc2", hidden_size(cfg), cfg->d_out);
    } else {
        add_linear(p, &r, "linear", cfg->d_in, cfg->d_out);
        if (cfg->type == PROJ_LINEAR_LN) add_layernorm(p, "norm", cfg->d_out);
    }
    p->sumsq = projector_alloc_f32(be, 1, (int64_t[]){p->n_params});
}

void projector_free(projector *p) {
    for (int i = 0; i < p->n_params; i++) {
        projector_param *pp = &p->params[i];
        tensor *ts[4] = {&pp->value, &pp->grad, &pp->m, &pp->v};
        for (int k = 0; k < 4; k++) p->be->release(ts[k]->data);
    }
    if (p->sumsq.data) p->be->release(p->sumsq.data);
    memset(p, 0, sizeof *p);
}

int64_t projector_numel(const projector *p) {
    int64_t n = 0;
    for (int i = 0; i < p->n_params; i++) n += tensor_numel(&p->params[i].value);
    return n;
}

projector_param *projector_find(projector *p, const char *name) {
    for (int i = 0; i < p->n_params; i++)
        if (!strcmp(p->params[i].name, name)) return &p->params[i];
    return NULL;
}

void projector_zero_grad(projector *p) {
    for (int i = 0; i < p->n_params; i++)
        p->be->zero(p->params[i].grad.data, tensor_bytes(&p->params[i].grad));
}

/* ---- forward / backward ---------------------------------------------------- */

/* A tensor in the arena shaped like x but with last dimension cols. */
static tensor like_rows(arena *ar, const tensor *x, int64_t cols) {
    int64_t shape[TENSOR_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = cols;
    return arena_tensor(ar, x->dt, x->ndim, shape);
}

static void linear_forward(tensor *y, const tensor *x, const projector_param *w,
                           const projector_param *b) {
    op_matmul(y, x, &w->value, &b->value, 0, 1, 0);
}

/* dW (+)= dy^T x, db (+)= sum of dy's rows. */
static void linear_param_grads(projector_param *w, projector_param *b, const tensor *dy,
                               const tensor *x, float beta) {
    op_matmul(&w->grad, dy, x, NULL, 1, 0, beta);
    op_bias_grad(&b->grad, dy, beta);
}

tensor projector_forward(const projector *p, arena *ar, const tensor *x, projector_saved *saved) {
    char s[80];
    AIMC_CHECK(x->ndim >= 2 && tensor_cols(x) == p->cfg.d_in,
               "projector_forward: x %s should be [rows, d_in = %lld]",
               tensor_shape_str(x, s, sizeof s), (long long)p->cfg.d_in);
    const projector_param *ps = p->params;
    projector_saved keep = {.x = *x};
    tensor y = like_rows(ar, x, p->cfg.d_out);
    if (p->cfg.type == PROJ_LINEAR) {
        linear_forward(&y, x, &ps[0], &ps[1]);
    } else if (p->cfg.type == PROJ_LINEAR_LN) {
        keep.pre = like_rows(ar, x, p->cfg.d_out);
        keep.mean = arena_new(ar, DT_F32, tensor_rows_count(x));
        keep.rstd = arena_new(ar, DT_F32, tensor_rows_count(x));
        linear_forward(&keep.pre, x, &ps[0], &ps[1]);
        op_layernorm(&y, &keep.mean, &keep.rstd, &keep.pre, &ps[2].value, &ps[3].value,
                     p->cfg.ln_eps);
    } else {
        keep.pre = like_rows(ar, x, hidden_size(&p->cfg));
        keep.act = like_rows(ar, x, hidden_size(&p->cfg));
        linear_forward(&keep.pre, x, &ps[0], &ps[1]);
        op_act(ACT_GELU, &keep.act, &keep.pre);
        linear_forward(&y, &keep.act, &ps[2], &ps[3]);
    }
    if (saved) *saved = keep;
    return y;
}

/* LayerNorm weight/bias gradients: the op overwrites its dw/db, so an
 * accumulating call goes through arena scratch and op_add. */
static void layernorm_backward_params(projector *p, arena *ar, const projector_saved *s,
                                      const tensor *dy, tensor *dpre, int accumulate) {
    projector_param *w = &p->params[2], *b = &p->params[3];
    if (!accumulate) {
        op_layernorm_backward(dpre, &w->grad, &b->grad, dy, &s->pre, &w->value, &s->mean, &s->rstd);
        return;
    }
    tensor dw = arena_new(ar, DT_F32, p->cfg.d_out), db = arena_new(ar, DT_F32, p->cfg.d_out);
    op_layernorm_backward(dpre, &dw, &db, dy, &s->pre, &w->value, &s->mean, &s->rstd);
    op_add(&w->grad, &w->grad, &dw);
    op_add(&b->grad, &b->grad, &db);
}

void projector_backward(projector *p, arena *ar, const projector_saved *s, const tensor *d_fused,
                        int accumulate) {
    char a[80], b[80];
    AIMC_CHECK(d_fused->dt == s->x.dt && tensor_cols(d_fused) == p->cfg.d_out &&
                   tensor_rows_count(d_fused) == tensor_rows_count(&s->x),
               "projector_backward: d_fused %s (%s) does not match the forward's x %s (%s)",
               tensor_shape_str(d_fused, a, sizeof a), dtype_name(d_fused->dt),
               tensor_shape_str(&s->x, b, sizeof b), dtype_name(s->x.dt));
    projector_param *ps = p->params;
    float beta = accumulate ? 1.0f : 0.0f;
    if (p->cfg.type == PROJ_LINEAR) {
        linear_param_grads(&ps[0], &ps[1], d_fused, &s->x, beta);
    } else if (p->cfg.type == PROJ_LINEAR_LN) {
        tensor dpre = like_rows(ar, &s->pre, p->cfg.d_out);
        layernorm_backward_params(p, ar, s, d_fused, &dpre, accumulate);
        linear_param_grads(&ps[0], &ps[1], &dpre, &s->x, beta);
    } else {
        tensor dact = like_rows(ar, &s->act, hidden_size(&p->cfg));
        tensor dpre = like_rows(ar, &s->pre, hidden_size(&p->cfg));
        linear_param_grads(&ps[2], &ps[3], d_fused, &s->act, beta);
        op_matmul(&dact, d_fused, &ps[2].value, NULL, 0, 0, 0);
        op_act_backward(ACT_GELU, &dpre, &dact, &s->pre);
        linear_param_grads(&ps[0], &ps[1], &dpre, &s->x, beta);
    }
}

/* ---- optimiser ------------------------------------------------------------- */

double projector_sumsq(projector *p) {
    float host[PROJECTOR_MAX_PARAMS];
    for (int i = 0; i < p->n_params; i++) {
        tensor out = tensor_slice0(&p->sumsq, i, 1);
        op_sumsq(&out, &p->params[i].grad);
    }
    p->be->download(host, p->sumsq.data, (size_t)p->n_params * sizeof *host);
    double total = 0;
    for (int i = 0; i < p->n_params; i++) total += host[i];
    return total;
}

double projector_step(projector *p, const adamw_opts *o, float lr, float clip) {
    double norm = sqrt(projector_sumsq(p)) * fabs((double)o->grad_scale);
    if (!isfinite(norm)) return norm;
    double scale = o->grad_scale;
    if (clip > 0) {
        double coef = (double)clip / (norm + 1e-6);
        if (coef < 1.0) scale *= coef;
    }
    for (int i = 0; i < p->n_params; i++) {
        projector_param *pp = &p->params[i];
        adamw_opts q = *o;
        q.lr = lr;
        q.grad_scale = (float)scale;
        q.weight_decay = pp->decay ? o->weight_decay : 0.0f;
        op_adamw(&pp->value, &pp->grad, &pp->m, &pp->v, &q);
    }
    return norm;
}
