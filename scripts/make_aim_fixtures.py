#!/usr/bin/env python3
"""Independent PyTorch reference of one AIM training step (docs/aim-step.md)
on the tiny fixture models tests/fixtures/models/{llava,blip2}; writes one
safetensors file per case under tests/fixtures/aim/. The format is
documented in tests/fixtures/aim/README.md.

Needs (fixture generation only, never at aimc run time):
    pip install torch transformers safetensors tokenizers
Run:
    python3 scripts/make_aim_fixtures.py

Every piece comes from the model's own transformers modules (loaded with
from_pretrained in float32, eager attention, .eval(), parameters frozen):
image tokens from get_image_features, token embeddings from
get_input_embeddings, the language model run on inputs_embeds with an
attention mask for the right-padded batch. The projector and the loss are
written here from the doc. Before writing, the script checks its numbers
against second, independent routes through transformers (see the
check_* functions) and stops on any disagreement.

Deterministic: fixed seeds, CPU, one thread, float32; reruns write
byte-identical files.
"""
import json
import math
import os
import struct
import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file
from transformers import (Blip2ForConditionalGeneration, LlavaForConditionalGeneration,
                          PreTrainedTokenizerFast)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MODEL_DIR = os.path.join(ROOT, "tests", "fixtures", "models")
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "aim")
IGNORE = -100
PROJECTOR_TYPES = ("linear", "linear_ln", "mlp")  # codes 0, 1, 2 = aimc's projector_type
LN_EPS = 1e-5  # torch's nn.LayerNorm default

# Relative tolerances of the self-checks (all computed in float32).
TOL_SAME_PATH = 1e-6   # the same numbers reached through transformers' own scatter
TOL_BATCHING = 1e-5    # padded batch vs each episode alone (different reduction shapes)


# ----------------------------------------------------------------------------
# episodes


@dataclass
class Episode:
    demo_texts: list      # k strings
    prompt: str
    answer: str           # target = tokens(answer) + [EOS]


@dataclass
class Case:
    model: str            # "llava" or "blip2"
    k: int
    projector: str        # one of PROJECTOR_TYPES
    layer: object         # int, or "last"
    seed: int             # images and projector weights
    episodes: list = field(default_factory=list)

    def file_name(self, n_layers):
        layer = self.resolved_layer(n_layers)
        return f"{self.model}_k{self.k}_{self.projector}_L{layer}.safetensors"

    def resolved_layer(self, n_layers):
        return n_layers if self.layer == "last" else self.layer


QUERIES = [("Question: what is this? Answer:", " a cat"),
           ("Caption:", " two dogs playing in the snow")]
DEMO_TEXTS = {
    0: [[], []],
    1: [["a cat"], ["a man riding a horse"]],
    3: [["a bird", "two dogs playing in the snow", "dog"],
        ["people walking on the beach", "a cat", "a plate of food"]],
}


def episodes_for(k):
    return [Episode(demos, p, a) for demos, (p, a) in zip(DEMO_TEXTS[k], QUERIES)]


def all_cases():
    cases = []
    for i, model in enumerate(("llava", "blip2")):
        for k in (0, 1, 3):
            cases.append(Case(model, k, "linear", "last", 1000 + 100 * i + k))
    # llava k = 1 with the same episodes (same seed) and other settings
    cases.append(Case("llava", 1, "linear", 1, 1001))
    cases.append(Case("llava", 1, "linear_ln", "last", 1001))
    cases.append(Case("llava", 1, "mlp", "last", 1001))
    for c in cases:
        c.episodes = episodes_for(c.k)
    return cases


# ----------------------------------------------------------------------------
# the frozen backbone, through transformers' own modules


class Backbone:
    """One fixture model: its tokenizer, E(ids), IMG(pixels), the native
    layouts of docs/aim-step.md and the language model on inputs_embeds."""

    def __init__(self, name):
        self.name = name
        folder = os.path.join(MODEL_DIR, name)
        cls = LlavaForConditionalGeneration if name == "llava" else Blip2ForConditionalGeneration
        self.model = cls.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        with open(os.path.join(folder, "special_tokens_map.json")) as f:
            special = json.load(f)
        self.tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"),
                                           **special)
        cfg = self.model.config
        self.bos = self.tok.bos_token_id
        self.eos = self.tok.eos_token_id
        self.pad = self.tok.pad_token_id
        self.image_token = cfg.image_token_id
        self.n_layers = cfg.text_config.num_hidden_layers
        self.d = cfg.text_config.hidden_size
        self.image_size = cfg.vision_config.image_size
        # LLaVA: [BOS] [IMG] [text]; BLIP-2: [IMG] [BOS] [text]
        self.bos_before_image = name == "llava"
        self.n_image_tokens = (cfg.image_seq_length if name == "llava" else cfg.num_query_tokens)

    def ids(self, text):
        """Token ids of text without special tokens."""
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def embed(self, ids):
        return self.model.get_input_embeddings()(torch.tensor(ids, dtype=torch.int64))

    def image_tokens(self, pixels):
        """IMG: [n, 3, H, W] -> [n, n_image_tokens, D] in the LLM's input space."""
        if self.name == "llava":
            feats = self.model.model.get_image_features(pixel_values=pixels).pooler_output
            feats = torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats
        else:
            feats = self.model.get_image_features(pixel_values=pixels).pooler_output
        assert feats.shape == (pixels.shape[0], self.n_image_tokens, self.d), feats.shape
        return feats

    def layout(self, front, image, after):
        """native layout around the image tokens: front (fused tokens, or
        nothing) goes immediately before the image; `after` is the text."""
        bos = self.embed([self.bos])
        if self.bos_before_image:
            return torch.cat([bos, front, image, after])
        return torch.cat([front, image, bos, after])

    def lm(self, inputs_embeds, attention_mask):
        """(logits [B, T, V], hidden_states tuple) of the language model."""
        if self.name == "llava":
            out = self.model.model.language_model(inputs_embeds=inputs_embeds,
                                                  attention_mask=attention_mask,
                                                  output_hidden_states=True)
            return self.model.lm_head(out.last_hidden_state), out.hidden_states
        out = self.model.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                        output_hidden_states=True)
        return out.logits, out.hidden_states

    def placeholder_ids(self, text_ids):
        """input_ids of the native layout with <image> placeholders, as the
        processors build them (for the independent checks)."""
        img = [self.image_token] * self.n_image_tokens
        if self.bos_before_image:
            return [self.bos] + img + text_ids
        return img + [self.bos] + text_ids


# ----------------------------------------------------------------------------
# the projector, from docs/aim-step.md


def projector_params(kind, d, gen):
    """Parameters in aimc's state_dict order and names (host/projector.h).
    Linear weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch's
    nn.Linear init); the LayerNorm weight 1 + N(0, 0.1) and bias N(0, 0.1), so
    that a wrong or missing affine part changes the results."""
    def uniform(shape, fan_in):
        return (torch.rand(shape, generator=gen) * 2 - 1) / math.sqrt(fan_in)

    def linear(prefix, n_out, n_in):
        return {f"{prefix}.weight": uniform((n_out, n_in), n_in),
                f"{prefix}.bias": uniform((n_out,), n_in)}
    if kind == "linear":
        return linear("linear", d, d)
    if kind == "linear_ln":
        p = linear("linear", d, d)
        p["norm.weight"] = 1 + 0.1 * torch.randn((d,), generator=gen)
        p["norm.bias"] = 0.1 * torch.randn((d,), generator=gen)
        return p
    assert kind == "mlp"
    hidden = d  # the doc's default hidden width
    return {**linear("fc1", hidden, d), **linear("fc2", d, hidden)}


def projector_forward(kind, p, h):
    """F = projector(H): H [n, D] -> [n, D]."""
    if kind == "linear":
        return h @ p["linear.weight"].T + p["linear.bias"]
    if kind == "linear_ln":
        y = h @ p["linear.weight"].T + p["linear.bias"]
        return F.layer_norm(y, (y.shape[-1],), p["norm.weight"], p["norm.bias"], eps=LN_EPS)
    a = F.gelu(h @ p["fc1.weight"].T + p["fc1.bias"], approximate="none")
    return a @ p["fc2.weight"].T + p["fc2.bias"]


# ----------------------------------------------------------------------------
# one AIM step


@dataclass
class EpisodeData:
    demo_pixels: torch.Tensor   # [k, 3, H, W]
    demo_ids: list              # k lists of ids
    query_pixels: torch.Tensor  # [1, 3, H, W]
    prompt_ids: list
    target_ids: list


def make_episode_data(bb, case, gen):
    eps = []
    s = bb.image_size
    for ep in case.episodes:
        demo_ids = [bb.ids(t) for t in ep.demo_texts]
        assert all(len(d) >= 1 for d in demo_ids)
        target = bb.ids(ep.answer) + [bb.eos]
        prompt = bb.ids(ep.prompt)
        eps.append(EpisodeData(torch.randn((case.k, 3, s, s), generator=gen), demo_ids,
                               torch.randn((1, 3, s, s), generator=gen), prompt, target))
    return eps


def aggregate(bb, pixels, ids, layer):
    """Step 1: hidden states of layer `layer` at the n text positions of
    native(image, text) run alone (batch of one, no padding)."""
    with torch.no_grad():
        x = bb.layout(torch.zeros(0, bb.d), bb.image_tokens(pixels[None])[0], bb.embed(ids))
        _, hs = bb.lm(x[None], torch.ones(1, x.shape[0], dtype=torch.int64))
        return hs[layer][0, x.shape[0] - len(ids):].clone()


def query_sequence(bb, fused, query_image, prompt_ids, target_ids):
    """Step 3: [fused demos] inserted before the query image tokens, prompt
    and target after the text position."""
    return bb.layout(fused, query_image, bb.embed(prompt_ids + target_ids))


def pad_batch(seqs):
    """Right-pads [T_b, D] rows to [B, T, D] (zeros) with the attention mask."""
    t_max = max(s.shape[0] for s in seqs)
    d = seqs[0].shape[1]
    x = torch.zeros(len(seqs), t_max, d)
    mask = torch.zeros(len(seqs), t_max, dtype=torch.int64)
    for b, s in enumerate(seqs):
        x[b, :s.shape[0]] = s
        mask[b, :s.shape[0]] = 1
    return x, mask


def make_labels(lengths, t_max, targets):
    labels = torch.full((len(lengths), t_max), IGNORE, dtype=torch.int64)
    for b, (n, t) in enumerate(zip(lengths, targets)):
        labels[b, n - len(t):n] = torch.tensor(t, dtype=torch.int64)
    return labels


def lm_loss(logits, labels):
    """Step 4: transformers' shift (logits at j predict the label at j + 1),
    mean over every target token of the batch."""
    v = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, v), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE, reduction="sum") / (labels != IGNORE).sum()


def aim_step(bb, case, eps, params):
    """Forward + backward of one AIM step; returns the loss and, per
    episode, the aggregated hidden states, fused tokens (grad retained) and
    the query inputs_embeds; projector gradients end up in params[..].grad."""
    layer = case.resolved_layer(bb.n_layers)
    hidden, fused, seqs = [], [], []
    for ep in eps:
        h = torch.cat([aggregate(bb, ep.demo_pixels[i], ep.demo_ids[i], layer)
                       for i in range(case.k)]) if case.k else torch.zeros(0, bb.d)
        f = projector_forward(case.projector, params, h)
        f.retain_grad()
        with torch.no_grad():
            q_image = bb.image_tokens(ep.query_pixels)[0]
        hidden.append(h)
        fused.append(f)
        seqs.append(query_sequence(bb, f, q_image, ep.prompt_ids, ep.target_ids))
    x, mask = pad_batch(seqs)
    targets = [ep.target_ids for ep in eps]
    labels = make_labels([s.shape[0] for s in seqs], x.shape[1], targets)
    logits, _ = bb.lm(x, mask)
    loss = lm_loss(logits, labels)
    loss.backward()
    return loss.detach(), hidden, fused, seqs


# ----------------------------------------------------------------------------
# independent checks


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def expect_close(what, a, b, tol):
    d = rel(a, b)
    if not d <= tol:  # not an assert: the checks must run under python -O too
        raise SystemExit(f"self-check failed: {what}: relative difference {d:.2e} > {tol:.0e}")
    return d


def check_image_tokens(bb, pixels):
    """IMG from get_image_features equals the model's modules run by hand
    (LLaVA: vision hidden state -2, CLS dropped, multi_modal_projector;
    BLIP-2: vision (post_layernorm) -> Q-Former -> language_projection)."""
    m = bb.model
    with torch.no_grad():
        got = bb.image_tokens(pixels)
        if bb.name == "llava":
            vt = m.model.vision_tower(pixels, output_hidden_states=True)
            ref = m.model.multi_modal_projector(vt.hidden_states[-2][:, 1:])
        else:
            v = m.vision_model(pixel_values=pixels).last_hidden_state
            q = m.qformer(query_embeds=m.query_tokens.expand(v.shape[0], -1, -1),
                          encoder_hidden_states=v,
                          encoder_attention_mask=torch.ones(v.shape[:-1], dtype=torch.int64))
            ref = m.language_projection(q.last_hidden_state)
    return expect_close(f"{bb.name} image tokens", got, ref, TOL_SAME_PATH)


def check_projector(kind, params, h):
    """projector_forward against torch.nn's own modules (nn.Linear,
    nn.LayerNorm with its default eps, nn.GELU with its default exact form)
    loaded with the same state_dict names."""
    d = h.shape[1]
    if kind == "linear":
        mod = torch.nn.ModuleDict({"linear": torch.nn.Linear(d, d)})
        run = lambda x: mod["linear"](x)  # noqa: E731
    elif kind == "linear_ln":
        mod = torch.nn.ModuleDict({"linear": torch.nn.Linear(d, d), "norm": torch.nn.LayerNorm(d)})
        run = lambda x: mod["norm"](mod["linear"](x))  # noqa: E731
    else:
        hidden = params["fc1.weight"].shape[0]
        mod = torch.nn.ModuleDict({"fc1": torch.nn.Linear(d, hidden),
                                   "fc2": torch.nn.Linear(hidden, d)})
        run = lambda x: mod["fc2"](torch.nn.GELU()(mod["fc1"](x)))  # noqa: E731
    mod.load_state_dict({n: p.detach() for n, p in params.items()}, strict=True)
    with torch.no_grad():
        return expect_close(f"projector {kind} vs torch.nn", projector_forward(kind, params, h),
                            run(h), TOL_SAME_PATH)


def hf_outputs(bb, **kw):
    out = bb.model(**kw, output_hidden_states=True)
    hs = out.hidden_states if bb.name == "llava" else out.language_model_outputs.hidden_states
    return out, hs


def check_aggregation(bb, case, eps, hidden):
    """H_i again, from the full model on input_ids with <image>
    placeholders (the processor's layout, transformers' own scatter)."""
    worst = 0.0
    layer = case.resolved_layer(bb.n_layers)
    for e, ep in enumerate(eps):
        rows = []
        for i in range(case.k):
            ids = torch.tensor([bb.placeholder_ids(ep.demo_ids[i])])
            with torch.no_grad():
                _, hs = hf_outputs(bb, input_ids=ids, pixel_values=ep.demo_pixels[i:i + 1],
                                   attention_mask=torch.ones_like(ids))
            rows.append(hs[layer][0, -len(ep.demo_ids[i]):])
        if rows:
            worst = max(worst, expect_close(f"aggregation, episode {e}", hidden[e],
                                            torch.cat(rows), TOL_SAME_PATH))
    return worst


def check_full_model_step(bb, case, eps, params, hidden, loss, grads):
    """The main pass again, built from token ids instead of layout(): the
    processor's input_ids with <image> placeholders (pad ids standing in for
    the fused tokens, inserted just before the first <image>), padded with
    the pad id, embedded, the fused rows written in; the full transformers
    model then finds the E(<image>) rows and scatters get_image_features
    itself, and computes its own shifted loss from labels. Backward to the
    projector. (hidden was checked by check_aggregation.)"""
    for p in params.values():
        p.grad = None
    rows, starts, lengths = [], [], []
    for e, ep in enumerate(eps):
        ids = bb.placeholder_ids(ep.prompt_ids + ep.target_ids)
        at = ids.index(bb.image_token)
        n = hidden[e].shape[0]
        rows.append(ids[:at] + [bb.pad] * n + ids[at:])
        starts.append(at)
        lengths.append(len(rows[-1]))
    t_max = max(lengths)
    ids = torch.tensor([r + [bb.pad] * (t_max - len(r)) for r in rows], dtype=torch.int64)
    mask = (torch.arange(t_max)[None] < torch.tensor(lengths)[:, None]).to(torch.int64)
    emb = bb.model.get_input_embeddings()(ids)
    x = []
    for e, at in enumerate(starts):
        f = projector_forward(case.projector, params, hidden[e])
        x.append(torch.cat([emb[e, :at], f, emb[e, at + f.shape[0]:]]))
    x = torch.stack(x)
    labels = make_labels(lengths, t_max, [ep.target_ids for ep in eps])
    pixels = torch.cat([ep.query_pixels for ep in eps])
    # input_ids=None: BLIP-2's forward has no default for it
    out = bb.model(input_ids=None, inputs_embeds=x, pixel_values=pixels, attention_mask=mask,
                   labels=labels)
    out.loss.backward()
    d = expect_close("loss, full model from ids", out.loss.detach(), loss, TOL_SAME_PATH)
    for name, g in grads.items():
        d = max(d, expect_close(f"grad {name}, full model from ids", params[name].grad, g,
                                10 * TOL_SAME_PATH))
    return d


def check_k0_input_ids(bb, case, eps, loss):
    """k = 0 only: the ordinary zero-shot batch as the processor builds it
    (input_ids with <image> placeholders, pad id, labels) through the
    full model's forward: no inputs_embeds built here at all."""
    seqs = [bb.placeholder_ids(ep.prompt_ids + ep.target_ids) for ep in eps]
    t_max = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t_max), bb.pad, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s)
        mask[b, :len(s)] = 1
    labels = make_labels([len(s) for s in seqs], t_max, [ep.target_ids for ep in eps])
    pixels = torch.cat([ep.query_pixels for ep in eps])
    with torch.no_grad():
        out = bb.model(input_ids=ids, pixel_values=pixels, attention_mask=mask, labels=labels)
    return expect_close("k=0 loss via input_ids", out.loss, loss, TOL_SAME_PATH)


def check_batching(bb, seqs, eps, loss):
    """The padded batch's loss equals the per-episode target sums of each
    episode run alone (no padding), divided by the batch's target count."""
    total, count = 0.0, 0
    with torch.no_grad():
        for s, ep in zip(seqs, eps):
            logits, _ = bb.lm(s.detach()[None], torch.ones(1, s.shape[0], dtype=torch.int64))
            labels = make_labels([s.shape[0]], s.shape[0], [ep.target_ids])
            n = len(ep.target_ids)
            total += lm_loss(logits, labels).double().item() * n
            count += n
    return expect_close("padded batch vs episodes alone", torch.tensor(total / count), loss,
                        TOL_BATCHING)


# ----------------------------------------------------------------------------
# output


def i32(values):
    return torch.tensor(values, dtype=torch.int32)


def case_tensors(bb, case, eps, params, loss, hidden, fused, seqs):
    t = {"batch": i32(len(eps)), "k": i32(case.k), "layer": i32(case.resolved_layer(bb.n_layers)),
         "projector_type": i32(PROJECTOR_TYPES.index(case.projector)),
         "bos_id": i32(bb.bos), "d_model": i32(bb.d),
         "n_targets": i32(sum(len(ep.target_ids) for ep in eps)),
         "loss": loss.reshape(())}
    if case.projector == "linear_ln":
        t["ln_eps"] = torch.tensor(LN_EPS, dtype=torch.float32)
    for name, p in params.items():
        t[name] = p.detach()
        t[f"grad.{name}"] = p.grad
    for e, ep in enumerate(eps):
        if case.k:
            t[f"demo_pixels.{e}"] = ep.demo_pixels
            t[f"demo_ids.{e}"] = i32([i for d in ep.demo_ids for i in d])
            t[f"demo_lens.{e}"] = i32([len(d) for d in ep.demo_ids])
            t[f"hidden.{e}"] = hidden[e]
            t[f"fused.{e}"] = fused[e].detach()
            t[f"fused_grad.{e}"] = fused[e].grad
        t[f"query_pixels.{e}"] = ep.query_pixels
        t[f"prompt_ids.{e}"] = i32(ep.prompt_ids)
        t[f"target_ids.{e}"] = i32(ep.target_ids)
        t[f"query_embeds.{e}"] = seqs[e].detach()
    return {k: v.detach().contiguous().clone() for k, v in t.items()}


def case_metadata(bb, case):
    return {"format": "pt", "model": bb.name, "projector": case.projector,
            "layer": str(case.resolved_layer(bb.n_layers)), "k": str(case.k),
            "demo_texts": json.dumps([ep.demo_texts for ep in case.episodes]),
            "queries": json.dumps([[ep.prompt, ep.answer] for ep in case.episodes]),
            "made_by": "scripts/make_aim_fixtures.py (docs/aim-step.md)"}


ST_DTYPES = {torch.float32: "F32", torch.int32: "I32"}


def write_safetensors(path, tensors, metadata):
    """safetensors with a reproducible header (safetensors' own writer
    orders __metadata__ differently from run to run): tensors in name order,
    data packed in that order (every dtype here is 4 bytes wide, so every
    offset stays aligned), header padded with spaces to a multiple of 8."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        data = t.contiguous().numpy().tobytes()  # little-endian: checked in main()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    back = load_file(path)  # the real reader must give back every tensor exactly
    assert sorted(back) == sorted(tensors)
    assert all(back[n].dtype == t.dtype and torch.equal(back[n], t) for n, t in tensors.items())


def run_case(bb, case):
    gen = torch.Generator().manual_seed(case.seed)
    eps = make_episode_data(bb, case, gen)
    params = projector_params(case.projector, bb.d, gen)
    for p in params.values():
        p.requires_grad_(True)
    loss, hidden, fused, seqs = aim_step(bb, case, eps, params)
    grads = {n: p.grad.clone() for n, p in params.items()}
    assert len(set(s.shape[0] for s in seqs)) > 1, "the batch must need padding"
    checks = {"image": check_image_tokens(bb, torch.cat([ep.query_pixels for ep in eps])),
              "aggregation": check_aggregation(bb, case, eps, hidden),
              "full_model": check_full_model_step(bb, case, eps, params, hidden, loss, grads),
              "batching": check_batching(bb, seqs, eps, loss)}
    if case.k:
        checks["projector"] = max(check_projector(case.projector, params, h) for h in hidden)
    if case.k == 0:
        checks["k0_input_ids"] = check_k0_input_ids(bb, case, eps, loss)
    for n, p in params.items():  # the tensors written are this step's gradients
        p.grad = grads[n]
    tensors = case_tensors(bb, case, eps, params, loss, hidden, fused, seqs)
    path = os.path.join(OUT_DIR, case.file_name(bb.n_layers))
    write_safetensors(path, tensors, case_metadata(bb, case))
    lens = [s.shape[0] for s in seqs]
    gnorm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads.values()))
    print(f"== {os.path.relpath(path, ROOT)}: loss {loss.item():.6f}, |grad| {gnorm:.4e}, "
          f"query lengths {lens}, {os.path.getsize(path) / 1e3:.1f} kB")
    print("   self-checks (relative diff): " + ", ".join(f"{k} {v:.1e}" for k, v in checks.items()))


def main():
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    assert sys.byteorder == "little", "safetensors data is little-endian"
    torch.set_num_threads(1)  # same reduction order on every machine
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    os.makedirs(OUT_DIR, exist_ok=True)
    for fn in os.listdir(OUT_DIR):
        if fn.endswith(".safetensors"):
            os.remove(os.path.join(OUT_DIR, fn))
    backbones = {}
    for case in all_cases():
        if case.model not in backbones:
            backbones[case.model] = Backbone(case.model)
        run_case(backbones[case.model], case)
    total = sum(os.path.getsize(os.path.join(OUT_DIR, f)) for f in os.listdir(OUT_DIR))
    print(f"total size of {os.path.relpath(OUT_DIR, ROOT)}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
