/* The contrastive objective for CLIP (host/contrastive.h) on the tiny CLIP
 * fixture (tests/fixtures/models/clip, made by transformers):
 *  - data path: the fixture's captions tokenized without special tokens and
 *    packed by contrastive_pack_text / contrastive_batch_from_episodes give
 *    the fixture's input_ids and attention_mask (the HF tokenizer's, padded);
 *    truncation keeps EOS (against the tokenizer's own max_length);
 *  - the step-0 loss on that batch equals transformers' CLIPModel loss
 *    (rel 1e-5);
 *  - head and logit_scale gradients against central finite differences of an
 *    independent float64 loss (pooled -> projection -> l2norm -> symmetric CE),
 *    on random features and heads of several batch sizes (rel 1e-4), loss rel
 *    1e-6;
 *  - the update against a float64 AdamW with global-norm clipping (decay on
 *    the weights only), and the logit_scale clamp to [0, ln 100];
 *  - world 2 over TCP (forked ranks, RANK / WORLD_SIZE / MASTER_ADDR /
 *    MASTER_PORT) with splits 3+3, 5+1 and 0+6 of a 6-pair batch against one
 *    process with all 6: the same losses and heads after 3 steps (rel 1e-5),
 *    and both ranks' heads bitwise equal;
 *  - the loss falls on a fixed batch; checkpoint tensors carry HF names.
 * The forked ranks run first: libgomp's thread pool does not survive fork, so
 * the parent starts no OpenMP region before them. */
#include "../data/tokenizer.h"
#include "../host/checkpoint.h"
#include "../host/contrastive.h"
#include "../host/dist.h"
#include "../kernels/check.h"
#include "testlib.h"
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <omp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define FIXTURE "tests/fixtures/models/clip"
#define ARENA_BYTES ((size_t)16 << 20)
#define LOSS_TOL 1e-5
#define GRAD_TOL 1e-4
#define DIST_TOL 1e-5
#define N_DIST 6
#define DIST_STEPS 3
#define LN100 4.605170185988091

static const char *const CLIP_TEXTS[] = {"a photo of a cat", "two dogs playing in the snow at night",
                                         "a <image> of a red car"};
enum { N_TEXTS = 3 };

/* ---- fixture ------------------------------------------------------------------ */

typedef struct fixture {
    model_dir *md;
    clip_model *m;
    float *pixels;
    int32_t *ids, *mask;
    int64_t n, len, px[4];
    double loss; /* transformers' CLIPModel loss */
} fixture;

static void die_test(const char *what, const char *err) {
    printf("FAIL: %s: %s\n", what, err);
    exit(1);
}

static const st_tensor *need_st(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    if (!t) die_test("fixture tensor missing", name);
    return t;
}

static void load_inputs(fixture *fx) {
    char err[512];
    st_file *f = st_open(FIXTURE "/inputs.safetensors", err, sizeof err);
    if (!f) die_test("inputs", err);
    const st_tensor *px = need_st(f, "pixel_values"), *ids = need_st(f, "input_ids"),
                    *mask = need_st(f, "attention_mask");
    for (int i = 0; i < 4; i++) fx->px[i] = px->shape[i];
    fx->n = ids->shape[0];
    fx->len = ids->shape[1];
    fx->pixels = tl_alloc(sizeof(float) * (size_t)(fx->px[0] * fx->px[1] * fx->px[2] * fx->px[3]));
    fx->ids = tl_alloc(sizeof(int32_t) * (size_t)(fx->n * fx->len));
    fx->mask = tl_alloc(sizeof(int32_t) * (size_t)(fx->n * fx->len));
    if (st_read_f32(px, fx->pixels, err, sizeof err) || st_read_i32(ids, fx->ids, err, sizeof err) ||
        st_read_i32(mask, fx->mask, err, sizeof err))
        die_test("inputs", err);
    st_close(f);
    f = st_open(FIXTURE "/expected.safetensors", err, sizeof err);
    if (!f) die_test("expected", err);
    float loss;
    if (st_read_f32(need_st(f, "loss"), &loss, err, sizeof err)) die_test("loss", err);
    fx->loss = loss;
    st_close(f);
}

static clip_model *load_model(model_dir **md) {
    char err[512];
    *md = model_dir_open(FIXTURE, err, sizeof err);
    if (!*md) die_test("model", err);
    nn_loader ld = {*md, backend_cpu(), DT_F32};
    return clip_load(&ld, "");
}

static void fixture_free(fixture *fx) {
    clip_free(fx->m);
    model_dir_close(fx->md);
    free(fx->pixels), free(fx->ids), free(fx->mask);
}

/* ---- host copies of the heads ---------------------------------------------------- */

static int64_t heads_numel(const contrastive_heads *h) { return h->p * (h->dv + h->dt) + 1; }

/* Every parameter (or gradient, grad = 1) concatenated in parameter order. */
static void heads_download(const contrastive_heads *h, int grad, float *out) {
    for (int i = 0; i < CONTRASTIVE_N_PARAMS; i++) {
        const tensor *t = grad ? &h->params.params[i].grad : &h->params.params[i].value;
        backend_cpu()->download(out, t->data, tensor_bytes(t));
        out += tensor_numel(t);
    }
}
static void heads_upload(contrastive_heads *h, const float *in) {
    for (int i = 0; i < CONTRASTIVE_N_PARAMS; i++) {
        tensor *t = &h->params.params[i].value;
        backend_cpu()->upload(t->data, in, tensor_bytes(t));
        in += tensor_numel(t);
    }
    contrastive_sync_scale(h);
}
static void poison_grads(contrastive_heads *h) {
    for (int i = 0; i < CONTRASTIVE_N_PARAMS; i++) {
        tensor *t = &h->params.params[i].grad;
        poison(t->data, tensor_numel(t));
    }
}

static double max_rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-30); }

/* ---- synthetic pairs for the multi-rank runs --------------------------------------- */

typedef struct pairs {
    float *pixels;
    int32_t *ids, *mask;
    int64_t n, len, px_per;
} pairs;

/* Random images and captions (BOS, 1..len-2 ordinary tokens, EOS, padding). */
static pairs pairs_random(int64_t n, int64_t len) {
    pairs p = {.n = n, .len = len, .px_per = 3 * 30 * 30};
    p.pixels = tl_alloc(sizeof(float) * (size_t)(n * p.px_per));
    p.ids = tl_alloc(sizeof(int32_t) * (size_t)(n * len));
    p.mask = tl_alloc(sizeof(int32_t) * (size_t)(n * len));
    fill_normal(p.pixels, n * p.px_per, 1.0);
    for (int64_t i = 0; i < n; i++) {
        int64_t words = 1 + rng_int(len - 2);
        int32_t *row = p.ids + i * len, *m = p.mask + i * len;
        for (int64_t j = 0; j < len; j++) {
            row[j] = j == 0 ? 1347 : j <= words ? (int32_t)rng_int(1347) : 1348;
            m[j] = j <= words + 1;
        }
    }
    return p;
}

static contrastive_batch pairs_slice(const pairs *p, int64_t i0, int64_t n) {
    return (contrastive_batch){.pixels = p->pixels + i0 * p->px_per, .ids = p->ids + i0 * p->len,
                               .mask = p->mask + i0 * p->len, .n = n, .len = p->len,
                               .channels = 3, .height = 30, .width = 30};
}

static const contrastive_opts DIST_OPTS = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.98f,
                                           .eps = 1e-6f, .weight_decay = 0.1f, .clip = 0.5f};

/* DIST_STEPS steps on rows [i0, i0 + n) of p: the losses and the final heads. */
static void run_steps(const clip_model *m, const pairs *p, int64_t i0, int64_t n, double *losses,
                      float *heads) {
    contrastive_heads h;
    contrastive_init(&h, m);
    arena a;
    arena_init(&a, m->be, ARENA_BYTES);
    contrastive_batch b = pairs_slice(p, i0, n);
    for (int s = 0; s < DIST_STEPS; s++) {
        contrastive_opts o = DIST_OPTS;
        o.step = s + 1;
        contrastive_result r = contrastive_step(&h, m, &a, &b, &o);
        losses[s] = r.updated && r.n_global == p->n ? r.loss : NAN;
    }
    heads_download(&h, 0, heads);
    arena_free(&a);
    contrastive_free(&h);
}

/* ---- forked TCP ranks --------------------------------------------------------------- */

static char g_dir[64];

static void setenv_int(const char *name, long v) {
    char b[32];
    snprintf(b, sizeof b, "%ld", v);
    setenv(name, b, 1);
}

static void result_path(char *buf, size_t n, const char *ext, int split, int rank) {
    snprintf(buf, n, "%s/split%d.rank%d.%s", g_dir, split, rank, ext);
}

/* One rank: its share of p, DIST_STEPS steps, losses + heads into a file. */
static void rank_main(const pairs *p, const int64_t *split, int split_id, int rank, int port) {
    char path[256];
    result_path(path, sizeof path, "log", split_id, rank);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(91);
    dup2(fd, 1), dup2(fd, 2), close(fd);
    setenv_int("RANK", rank), setenv("WORLD_SIZE", "2", 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1), setenv_int("MASTER_PORT", port);
    setenv("AIMC_DIST_TIMEOUT", "30", 1);
    omp_set_num_threads(1); /* two ranks on a small machine: no threads spinning against each other */
    dist_init(&(dist_opts){.quiet = 1});
    model_dir *md;
    clip_model *m = load_model(&md);
    float heads[4096];
    double losses[DIST_STEPS];
    int64_t i0 = rank ? split[0] : 0;
    run_steps(m, p, i0, split[rank], losses, heads);
    result_path(path, sizeof path, "bin", split_id, rank);
    FILE *f = fopen(path, "wb");
    int64_t count = m->proj_dim * (m->vision->enc.dim + m->text.enc.dim) + 1;
    if (!f || fwrite(losses, sizeof losses, 1, f) != 1 ||
        fwrite(heads, sizeof(float), (size_t)count, f) != (size_t)count || fclose(f))
        _exit(92);
    dist_finalize();
    clip_free(m);
    model_dir_close(md);
    fflush(NULL);
    _exit(0);
}

static int wait_rank(pid_t pid, double seconds) {
    int status = 0;
    for (double t = 0; t < seconds; t += 0.01) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return 128 + SIGKILL;
}

static void print_log(int split_id, int rank) {
    char path[256], line[512];
    result_path(path, sizeof path, "log", split_id, rank);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) printf("    rank %d: %s", rank, line);
    if (f) fclose(f);
}

/* Runs one split over two ranks; 0 with both ranks' results read, else -1. */
static int run_split(const pairs *p, const int64_t *split, int split_id, double (*losses)[DIST_STEPS],
                     float *heads[2], int64_t count) {
    int port = tl_free_port();
    pid_t pid[2];
    fflush(NULL);
    for (int r = 0; r < 2; r++)
        if ((pid[r] = fork()) == 0) rank_main(p, split, split_id, r, port);
    int ok = 1;
    for (int r = 0; r < 2; r++) {
        int rc = wait_rank(pid[r], 120.0);
        CHECK(rc == 0, "split %lld+%lld: rank %d exited with %d", (long long)split[0],
              (long long)split[1], r, rc);
        if (rc) print_log(split_id, r), ok = 0;
    }
    for (int r = 0; r < 2 && ok; r++) {
        char path[256];
        result_path(path, sizeof path, "bin", split_id, r);
        FILE *f = fopen(path, "rb");
        ok = f && fread(losses[r], sizeof losses[r], 1, f) == 1 &&
             fread(heads[r], sizeof(float), (size_t)count, f) == (size_t)count;
        if (f) fclose(f);
        CHECK(ok, "split %d rank %d: no result file", split_id, r);
    }
    return ok ? 0 : -1;
}

static void compare_split(const int64_t *split, double (*losses)[DIST_STEPS], float *heads[2],
                          const double *ref_loss, const float *ref_heads, int64_t count) {
    double worst = 0;
    for (int r = 0; r < 2; r++)
        for (int s = 0; s < DIST_STEPS; s++) {
            double e = max_rel(losses[r][s], ref_loss[s]);
            worst = isnan(e) || e > worst ? e : worst;
        }
    double eh = rel_err_f32(heads[0], ref_heads, count);
    int same = !memcmp(heads[0], heads[1], sizeof(float) * (size_t)count);
    printf("  world 2, split %lld+%lld: loss rel err %.2e, heads rel err %.2e, ranks %s\n",
           (long long)split[0], (long long)split[1], worst, eh, same ? "bitwise equal" : "DIFFER");
    CHECK(worst <= DIST_TOL, "split %lld+%lld: losses differ from world 1 by %.3e",
          (long long)split[0], (long long)split[1], worst);
    CHECK(eh <= DIST_TOL, "split %lld+%lld: heads differ from world 1 by %.3e",
          (long long)split[0], (long long)split[1], eh);
    CHECK(same, "split %lld+%lld: the two ranks' heads differ", (long long)split[0],
          (long long)split[1]);
}

/* Must run before anything in this process starts an OpenMP region. */
static void test_world2(void) {
    static const int64_t splits[][2] = {{3, 3}, {5, 1}, {0, 6}};
    enum { N_SPLITS = 3 };
    snprintf(g_dir, sizeof g_dir, "/tmp/aimc_contrastive_XXXXXX");
    if (!mkdtemp(g_dir)) die_test("mkdtemp", strerror(errno));
    pairs p = pairs_random(N_DIST, 10);
    int64_t count = 16 * (32 + 32) + 1; /* the fixture's heads; checked below */
    double losses[N_SPLITS][2][DIST_STEPS];
    float *heads[N_SPLITS][2];
    int ok[N_SPLITS];
    for (int s = 0; s < N_SPLITS; s++) {
        heads[s][0] = tl_alloc(sizeof(float) * (size_t)count);
        heads[s][1] = tl_alloc(sizeof(float) * (size_t)count);
        ok[s] = !run_split(&p, splits[s], s, losses[s], heads[s], count);
    }
    /* the reference: one process with the whole batch */
    model_dir *md;
    clip_model *m = load_model(&md);
    CHECK(m->proj_dim * (m->vision->enc.dim + m->text.enc.dim) + 1 == count,
          "fixture head sizes changed");
    double ref_loss[DIST_STEPS];
    float *ref_heads = tl_alloc(sizeof(float) * (size_t)count);
    run_steps(m, &p, 0, N_DIST, ref_loss, ref_heads);
    printf("  world 1, %d pairs: losses %.6f %.6f %.6f\n", N_DIST, ref_loss[0], ref_loss[1],
           ref_loss[2]);
    for (int s = 0; s < N_SPLITS; s++) {
        if (ok[s]) compare_split(splits[s], losses[s], heads[s], ref_loss, ref_heads, count);
        free(heads[s][0]), free(heads[s][1]);
    }
    free(ref_heads);
    clip_free(m);
    model_dir_close(md);
    free(p.pixels), free(p.ids), free(p.mask);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd)) printf("  (could not remove %s)\n", g_dir);
}

/* ---- text packing and the data path ---------------------------------------------------- */

static tokenizer *load_tokenizer(void) {
    char err[512];
    tokenizer *tok = tokenizer_load(FIXTURE, err, sizeof err);
    if (!tok) die_test("tokenizer", err);
    return tok;
}

/* Caption tokens as an episode's query holds them: no special tokens, then EOS. */
static void caption_tokens(const tokenizer *tok, const char *text, int32_t eos, tok_ids *out) {
    char err[256];
    tokenizer_encode_opts o = {.add_special = 0, .max_length = -1};
    if (tokenizer_encode(tok, text, strlen(text), &o, out, err, sizeof err)) die_test("encode", err);
    if (out->n + 1 > out->cap) {
        out->cap = out->n + 8;
        out->ids = realloc(out->ids, sizeof(int32_t) * (size_t)out->cap);
    }
    out->ids[out->n++] = eos;
}

/* Packing against the tokenizer's own special tokens and truncation. */
static void test_pack_text(const tokenizer *tok, const contrastive_text_spec *spec) {
    const char *texts[] = {"a photo of a cat", "two dogs playing in the snow at night", ""};
    int64_t lens[] = {2, 4, 7, 20};
    int bad = 0;
    for (size_t t = 0; t < sizeof texts / sizeof *texts; t++)
        for (size_t l = 0; l < sizeof lens / sizeof *lens; l++) {
            tok_ids cap = {0}, ref = {0};
            char err[256];
            caption_tokens(tok, texts[t], spec->eos, &cap);
            tokenizer_encode_opts o = {.add_special = 1, .max_length = lens[l]};
            if (tokenizer_encode(tok, texts[t], strlen(texts[t]), &o, &ref, err, sizeof err))
                die_test("encode", err);
            int32_t ids[32], mask[32];
            memset(ids, 0x7f, sizeof ids);
            int64_t k = contrastive_pack_text(cap.ids, cap.n, spec, lens[l], ids, mask);
            int ok = k == ref.n;
            for (int64_t j = 0; j < lens[l]; j++)
                ok &= ids[j] == (j < ref.n ? ref.ids[j] : spec->pad) && mask[j] == (j < ref.n);
            if (!ok) printf("  pack '%s' to %lld: %lld tokens, tokenizer %lld\n", texts[t],
                            (long long)lens[l], (long long)k, (long long)ref.n);
            bad += !ok;
            tok_ids_free(&cap), tok_ids_free(&ref);
        }
    CHECK(bad == 0, "%d packed texts differ from the tokenizer's BOS..EOS truncation", bad);
    /* special ids inside the tokens are dropped (an inner EOS would move the pooling) */
    const int32_t marked[] = {spec->bos, 5, spec->eos, 7, spec->eos};
    const int32_t want[6] = {spec->bos, 5, 7, spec->eos, spec->pad, spec->pad};
    int32_t ids[6], mask[6];
    int64_t k = contrastive_pack_text(marked, 5, spec, 6, ids, mask);
    CHECK(k == 4 && !memcmp(ids, want, sizeof want) && mask[3] == 1 && mask[4] == 0,
          "marked tokens packed to %lld: %d %d %d %d", (long long)k, ids[0], ids[1], ids[2], ids[3]);
}

/* k = 0 episodes of the fixture's images and captions. */
static void make_episodes(const fixture *fx, const tokenizer *tok, int32_t eos, episode *eps) {
    int64_t per = fx->px[1] * fx->px[2] * fx->px[3];
    for (int i = 0; i < N_TEXTS; i++) {
        episode_item *it = calloc(1, sizeof *it);
        tok_ids t = {0};
        caption_tokens(tok, CLIP_TEXTS[i], eos, &t);
        it->pixels = tl_alloc(sizeof(float) * (size_t)per);
        memcpy(it->pixels, fx->pixels + i * per, sizeof(float) * (size_t)per);
        it->height = fx->px[2], it->width = fx->px[3];
        it->tokens = t.ids, it->n_tokens = t.n;
        it->source = strdup(CLIP_TEXTS[i]);
        eps[i] = (episode){.k = 0, .items = it};
    }
}

static void check_bad_episodes(episode *eps, const contrastive_text_spec *spec) {
    contrastive_owned_batch ob;
    char err[256] = "";
    eps[1].k = 1; /* pretend it has a demonstration: items[1] is the query */
    episode_item two[2] = {eps[1].items[0], eps[1].items[0]};
    episode_item *saved = eps[1].items;
    eps[1].items = two;
    int rc = contrastive_batch_from_episodes(eps, N_TEXTS, spec, &ob, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "k = 0"), "an episode with k = 1 was accepted: %s", err);
    eps[1].k = 0, eps[1].items = saved;
    eps[2].items[0].width--;
    rc = contrastive_batch_from_episodes(eps, N_TEXTS, spec, &ob, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "one image size"), "mixed image sizes were accepted: %s", err);
    eps[2].items[0].width++;
}

/* The batch built from episodes is the fixture's input, and its step-0 loss
 * is transformers' loss. */
static void test_fixture_loss(fixture *fx) {
    tokenizer *tok = load_tokenizer();
    contrastive_text_spec spec;
    char err[256];
    if (contrastive_text_spec_get(tok, fx->m, &spec, err, sizeof err)) die_test("spec", err);
    CHECK(spec.bos == 1347 && spec.eos == 1348 && spec.pad == 1348 && spec.max_len == 77,
          "text spec bos %d eos %d pad %d max %lld", spec.bos, spec.eos, spec.pad,
          (long long)spec.max_len);
    test_pack_text(tok, &spec);
    episode eps[N_TEXTS];
    make_episodes(fx, tok, spec.eos, eps);
    check_bad_episodes(eps, &spec);
    contrastive_owned_batch ob;
    if (contrastive_batch_from_episodes(eps, N_TEXTS, &spec, &ob, err, sizeof err))
        die_test("batch", err);
    int same = ob.b.n == fx->n && ob.b.len == fx->len &&
               !memcmp(ob.ids, fx->ids, sizeof(int32_t) * (size_t)(fx->n * fx->len)) &&
               !memcmp(ob.mask, fx->mask, sizeof(int32_t) * (size_t)(fx->n * fx->len));
    CHECK(same, "packed batch [%lld, %lld] differs from the fixture's input_ids/attention_mask",
          (long long)ob.b.n, (long long)ob.b.len);
    contrastive_heads h;
    contrastive_init(&h, fx->m);
    arena a;
    arena_init(&a, backend_cpu(), ARENA_BYTES);
    poison_grads(&h);
    contrastive_result r = contrastive_grads(&h, fx->m, &a, &ob.b, 1);
    double e = max_rel(r.loss, fx->loss);
    printf("  step-0 loss %.7f, transformers %.7f (rel err %.2e)\n", r.loss, fx->loss, e);
    CHECK(e <= LOSS_TOL && r.n_global == 3, "step-0 loss %.7f vs %.7f (N %lld)", r.loss, fx->loss,
          (long long)r.n_global);
    CHECK(a.used == 0, "contrastive_grads left %zu arena bytes in use", a.used);
    arena_free(&a);
    contrastive_free(&h);
    contrastive_owned_batch_free(&ob);
    for (int i = 0; i < N_TEXTS; i++) episode_free(&eps[i]);
    tokenizer_free(tok);
}

/* ---- gradients against finite differences ------------------------------------------------- */

typedef struct ref_problem {
    const double *xv, *xt; /* pooled [b, dv], [b, dt] */
    int64_t b, dv, dt, p;
} ref_problem;

/* Unit rows of x W^T into e [b, p]. */
static void ref_embed(const double *x, const double *w, int64_t b, int64_t d, int64_t p, double *e) {
    for (int64_t i = 0; i < b; i++) {
        double nrm = 0;
        for (int64_t k = 0; k < p; k++) {
            double s = 0;
            for (int64_t j = 0; j < d; j++) s += x[i * d + j] * w[k * d + j];
            e[i * p + k] = s;
            nrm += s * s;
        }
        for (int64_t k = 0; k < p; k++) e[i * p + k] /= sqrt(nrm);
    }
}

/* Mean over rows of CE(row i of s A B^T, target i). */
static double ref_ce(const double *a, const double *bm, int64_t n, int64_t p, double s) {
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        double lg[64], mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < n; j++) {
            double d = 0;
            for (int64_t k = 0; k < p; k++) d += a[i * p + k] * bm[j * p + k];
            lg[j] = s * d;
            mx = fmax(mx, lg[j]);
        }
        for (int64_t j = 0; j < n; j++) sum += exp(lg[j] - mx);
        total += mx + log(sum) - lg[i];
    }
    return total / (double)n;
}

/* transformers' CLIP loss of params = [W_v | W_t | logit_scale]. */
static double ref_loss(const ref_problem *q, const double *params) {
    double ei[64 * 16], et[64 * 16];
    ref_embed(q->xv, params, q->b, q->dv, q->p, ei);
    ref_embed(q->xt, params + q->p * q->dv, q->b, q->dt, q->p, et);
    double s = exp(params[q->p * (q->dv + q->dt)]);
    return 0.5 * (ref_ce(ei, et, q->b, q->p, s) + ref_ce(et, ei, q->b, q->p, s));
}

static void fd_grads(const ref_problem *q, double *params, int64_t n, double *g) {
    const double step = 1e-6;
    for (int64_t i = 0; i < n; i++) {
        double keep = params[i];
        params[i] = keep + step;
        double up = ref_loss(q, params);
        params[i] = keep - step;
        double down = ref_loss(q, params);
        params[i] = keep;
        g[i] = (up - down) / (2 * step);
    }
}

/* Random heads and features; returns the heads as f32 (uploaded) and f64. */
static void random_heads(contrastive_heads *h, float *hf, double *hd) {
    int64_t n = heads_numel(h);
    fill_normal(hf, n - 1, 0.2);
    hf[n - 1] = (float)rng_uniform(1.0, 3.0);
    for (int64_t i = 0; i < n; i++) hd[i] = hf[i];
    heads_upload(h, hf);
}

static void check_grads_once(contrastive_heads *h, arena *a, int64_t b) {
    int64_t n = heads_numel(h), dv = h->dv, dt = h->dt;
    float *hf = tl_alloc(sizeof(float) * (size_t)n), *got = tl_alloc(sizeof(float) * (size_t)n);
    float *xv = tl_alloc(sizeof(float) * (size_t)(b * dv)), *xt = tl_alloc(sizeof(float) * (size_t)(b * dt));
    double *hd = tl_alloc(sizeof(double) * (size_t)n), *g = tl_alloc(sizeof(double) * (size_t)n);
    double *xvd = tl_alloc(sizeof(double) * (size_t)(b * dv)), *xtd = tl_alloc(sizeof(double) * (size_t)(b * dt));
    random_heads(h, hf, hd);
    fill_normal(xv, b * dv, 1.0), fill_normal(xt, b * dt, 1.0);
    for (int64_t i = 0; i < b * dv; i++) xvd[i] = xv[i];
    for (int64_t i = 0; i < b * dt; i++) xtd[i] = xt[i];
    tensor pv = tensor_wrap(xv, DT_F32, backend_cpu(), 2, (int64_t[]){b, dv});
    tensor pt = tensor_wrap(xt, DT_F32, backend_cpu(), 2, (int64_t[]){b, dt});
    poison_grads(h);
    contrastive_result r = contrastive_loss_grads(h, a, &pv, &pt, 1);
    heads_download(h, 1, got);
    ref_problem q = {xvd, xtd, b, dv, dt, h->p};
    double want = ref_loss(&q, hd);
    fd_grads(&q, hd, n, g);
    double el = max_rel(r.loss, want), eg = rel_err(got, g, n);
    double es = max_rel(got[n - 1], g[n - 1]);
    printf("  b = %lld: loss rel err %.2e, head grads rel err %.2e, logit_scale grad rel err %.2e\n",
           (long long)b, el, eg, es);
    CHECK(el <= 1e-6, "b %lld: loss %.8f vs float64 %.8f", (long long)b, r.loss, want);
    CHECK(eg <= GRAD_TOL, "b %lld: gradients rel err %.3e vs finite differences", (long long)b, eg);
    CHECK(es <= GRAD_TOL, "b %lld: logit_scale grad %.6g vs %.6g", (long long)b, got[n - 1], g[n - 1]);
    free(hf), free(got), free(xv), free(xt), free(hd), free(g), free(xvd), free(xtd);
}

static void test_grads(const clip_model *m) {
    contrastive_heads h;
    contrastive_init(&h, m);
    arena a;
    arena_init(&a, backend_cpu(), ARENA_BYTES);
    const int64_t sizes[] = {2, 3, 5, 11};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) check_grads_once(&h, &a, sizes[i]);
    arena_free(&a);
    contrastive_free(&h);
}

/* ---- the update ---------------------------------------------------------------------------- */

/* Expected parameters after one AdamW step (from zero moments) with clipping. */
static double ref_update(const contrastive_heads *h, const float *p0, const float *g,
                         const contrastive_opts *o, double *out) {
    int64_t n = heads_numel(h);
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    double norm = sqrt(ss), coef = o->clip > 0 ? fmin(1.0, o->clip / (norm + 1e-6)) : 1.0;
    double c1 = 1 - pow(o->beta1, (double)o->step), c2 = 1 - pow(o->beta2, (double)o->step);
    for (int64_t i = 0; i < n; i++) {
        double gi = g[i] * coef, mh = (1 - o->beta1) * gi / c1,
               vh = (1 - o->beta2) * gi * gi / c2;
        double wd = i < n - 1 ? o->weight_decay : 0.0; /* none on logit_scale */
        out[i] = p0[i] - o->lr * (mh / (sqrt(vh) + o->eps) + wd * p0[i]);
    }
    return norm;
}

static void set_scale(contrastive_heads *h, float v) {
    backend_cpu()->upload(h->params.params[CONTRASTIVE_SCALE].value.data, &v, sizeof v);
    contrastive_sync_scale(h);
}

static void test_update(const clip_model *m) {
    contrastive_heads h;
    contrastive_init(&h, m);
    arena a;
    arena_init(&a, backend_cpu(), ARENA_BYTES);
    int64_t n = heads_numel(&h), b = 4;
    float *hf = tl_alloc(sizeof(float) * (size_t)n), *g = tl_alloc(sizeof(float) * (size_t)n),
          *after = tl_alloc(sizeof(float) * (size_t)n), *x = tl_alloc(sizeof(float) * (size_t)(b * 64));
    double *hd = tl_alloc(sizeof(double) * (size_t)n), *want = tl_alloc(sizeof(double) * (size_t)n);
    random_heads(&h, hf, hd);
    fill_normal(x, b * 64, 1.0);
    tensor pv = tensor_wrap(x, DT_F32, backend_cpu(), 2, (int64_t[]){b, h.dv});
    tensor pt = tensor_wrap(x + b * h.dv, DT_F32, backend_cpu(), 2, (int64_t[]){b, h.dt});
    contrastive_loss_grads(&h, &a, &pv, &pt, 1);
    heads_download(&h, 1, g);
    contrastive_opts o = {.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.98f, .eps = 1e-6f,
                          .weight_decay = 0.2f, .step = 1};
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    o.clip = (float)(0.3 * sqrt(ss)); /* clipping engaged */
    double norm_want = ref_update(&h, hf, g, &o, want);
    double norm = contrastive_update(&h, &o);
    heads_download(&h, 0, after);
    double e = rel_err(after, want, n), en = max_rel(norm, norm_want);
    printf("  AdamW + clipping: params rel err %.2e, norm rel err %.2e\n", e, en);
    CHECK(e <= 1e-6 && en <= 1e-6, "update: params rel err %.3e, norm rel err %.3e", e, en);
    CHECK(fabs(after[n - 1] - want[n - 1]) <= 1e-6, "logit_scale %.8f, expected %.8f (no decay)",
          after[n - 1], want[n - 1]);
    CHECK(h.logit_scale == after[n - 1], "host logit_scale %.8f, parameter %.8f", h.logit_scale,
          after[n - 1]);
    /* the clamp, both ends */
    const float starts[2] = {5.0f, -0.5f}, ends[2] = {(float)LN100, 0.0f};
    for (int k = 0; k < 2; k++) {
        set_scale(&h, starts[k]);
        contrastive_loss_grads(&h, &a, &pv, &pt, 2);
        o.step = 2 + k, o.lr = 1e-4f;
        contrastive_update(&h, &o);
        heads_download(&h, 0, after);
        CHECK(after[n - 1] == ends[k] && h.logit_scale == ends[k],
              "logit_scale from %g: %.8f after the clamp, expected %.8f", starts[k], after[n - 1],
              ends[k]);
    }
    free(hf), free(g), free(after), free(x), free(hd), free(want);
    arena_free(&a);
    contrastive_free(&h);
}

/* ---- training on a fixed batch, checkpoint names ---------------------------------------------- */

static void test_loss_falls(const fixture *fx) {
    contrastive_heads h;
    contrastive_init(&h, fx->m);
    arena a;
    arena_init(&a, backend_cpu(), ARENA_BYTES);
    contrastive_batch b = {.pixels = fx->pixels, .ids = fx->ids, .mask = fx->mask, .n = fx->n,
                           .len = fx->len, .channels = fx->px[1], .height = fx->px[2],
                           .width = fx->px[3]};
    double first = NAN, last = NAN;
    int all_updated = 1;
    for (int s = 1; s <= 10; s++) {
        contrastive_opts o = {.lr = 2e-2f, .beta1 = 0.9f, .beta2 = 0.98f, .eps = 1e-6f,
                              .weight_decay = 0.0f, .clip = 1.0f, .step = s};
        contrastive_result r = contrastive_step(&h, fx->m, &a, &b, &o);
        if (s == 1) first = r.loss;
        last = r.loss;
        all_updated &= r.updated;
    }
    printf("  fixed batch: loss %.4f -> %.4f after 10 steps\n", first, last);
    CHECK(all_updated && last < 0.5 * first, "loss %.4f -> %.4f: no clear fall", first, last);
    ckpt_tensor t[CKPT_PROJECTOR_MAX_TENSORS];
    int nt = ckpt_projector_tensors(&h.params, 1, t);
    CHECK(nt == 9 && !strcmp(t[0].name, "visual_projection.weight") && t[0].shape[0] == 16 &&
              t[0].shape[1] == 32 && !strcmp(t[1].name, "text_projection.weight") &&
              !strcmp(t[2].name, "logit_scale") && t[2].ndim == 1 &&
              !strcmp(t[5].name, "exp_avg.logit_scale"),
          "checkpoint tensors: %d, first '%s'", nt, nt ? t[0].name : "");
    ckpt_tensors_free(t, nt);
    char desc[96];
    CHECK(!strcmp(contrastive_describe(&h, desc, sizeof desc),
                  "type=clip_heads d_vision=32 d_text=32 d_proj=16"),
          "describe: %s", desc);
    arena_free(&a);
    contrastive_free(&h);
}

int main(void) {
    tests_begin("contrastive");
    test_world2(); /* first: forks */
    fixture fx = {0};
    load_inputs(&fx);
    fx.m = load_model(&fx.md);
    test_fixture_loss(&fx);
    test_grads(fx.m);
    test_update(fx.m);
    test_loss_falls(&fx);
    fixture_free(&fx);
    return tests_done();
}
