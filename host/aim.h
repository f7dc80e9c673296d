/* The AIM step (docs/aim-step.md is the exact contract): aggregate each
 * demonstration alone with the frozen multimodal model, project the hidden
 * states at its text positions into fused tokens, insert them before the
 * query's image tokens, and run the frozen model on the query for the LM loss
 * on the target tokens; backward through the frozen LLM to its input
 * embeddings only, into the projector's parameter gradients.
 *
 * One implementation for every backbone (LLaVA-1.5, BLIP-2) and backend. */
#ifndef AIMC_AIM_H
#define AIMC_AIM_H
#include "../data/episode.h"
#include "arena.h"
#include "projector.h"

struct mllm;

typedef struct aim_model {
    struct mllm *mllm;    /* frozen backbone (host/mllm.h), borrowed */
    projector *proj;      /* trainable, borrowed */
    int64_t layer;        /* hidden_states index used for aggregation; negative counts from the end */
} aim_model;

/* Number of target tokens in a batch of episodes (the query items' n_target). */
int64_t aim_count_targets(const episode *eps, int n_eps);

/* Fused tokens of one demonstration item: [n_tokens, D] from the arena
 * (aggregation + projector forward; saved may be NULL when no backward). */
tensor aim_fuse_demo(const aim_model *am, arena *a, const episode_item *demo,
                     projector_saved *saved);

/* The aggregated hidden states of one demonstration (step 1 of
 * docs/aim-step.md): hidden_states[layer] of the frozen LM run alone on
 * native(image, text) at the n_tokens text positions, [n_tokens, D] (act
 * dtype) from the arena. aim_fuse_demo is projector(this). */
tensor aim_demo_hidden(const aim_model *am, arena *a, const episode_item *demo);

/* Forward (and when want_grad, backward) of a batch of episodes as one
 * right-padded batch. Returns the SUM of the target tokens' losses (divide
 * by the global target count for the mean). With want_grad the projector
 * gradients of dscale * (that sum) are added to the projector's gradient
 * buffers (accumulate across micro-batches; zero them at the start of a
 * step). dscale is 1 / (target tokens of the whole global batch) for the
 * mean loss of docs/aim-step.md. Each episode may have its own k and
 * lengths. Step memory comes from the arena, which is left as it was found
 * (everything the step allocates is released before it returns).
 *
 * The demonstrations of the whole batch are aggregated in one right-padded
 * no-grad forward (the same numbers as one at a time: causal attention
 * never looks at the padding, and right padding keeps every position),
 * and their fused tokens in one projector call. A batch without fused rows
 * (k = 0) or without targets skips the backward: there is no gradient. */
double aim_batch_step(const aim_model *am, arena *a, const episode *eps, int n_eps, float dscale,
                      int want_grad);

/* What one step saw, as host f32 copies (malloc'd; aim_trace_free), for
 * tests and debugging. */
typedef struct aim_trace {
    int64_t batch, len, d_model;
    float *embeds;   /* [batch, len, D]: the right-padded query inputs_embeds */
    int32_t *mask;   /* [batch, len]: 1 on real rows */
    int64_t n_fused; /* fused rows of the batch (episode, then demo order) */
    float *d_fused;  /* [n_fused, D]: d (dscale * loss sum) / d fused; NULL without want_grad
                        or without fused rows */
} aim_trace;
/* aim_batch_step that also fills *trace (when not NULL). */
double aim_batch_step_traced(const aim_model *am, arena *a, const episode *eps, int n_eps,
                             float dscale, int want_grad, aim_trace *trace);
void aim_trace_free(aim_trace *t);
#endif
