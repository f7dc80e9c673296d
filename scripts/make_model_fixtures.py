#!/usr/bin/env python3
"""Builds tiny random-weight CLIP, LLaVA and BLIP-2 models of the exact
Hugging Face architectures and writes, for each, the checkpoint folder,
inputs.safetensors and transformers' outputs in expected.safetensors under
tests/fixtures/models/. The format is documented in
tests/fixtures/models/README.md.

Needs (fixture generation only, never at aimc run time):
    pip install torch transformers safetensors tokenizers
Run:
    python3 scripts/make_model_fixtures.py            # every folder
    python3 scripts/make_model_fixtures.py llava_wide # only the named ones
(llava also writes llava_oldkeys.)

It reads the tokenizers in tests/fixtures/tokenizers/{clip,llama,opt}
(made by scripts/make_tokenizer_fixtures.py), so rerun it after those change.
Deterministic: fixed seeds, CPU, float32, eager attention.
"""
import json
import math
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (Blip2Config, Blip2ForConditionalGeneration,
                          CLIPConfig, CLIPModel, CLIPVisionConfig, LlamaConfig,
                          LlavaConfig, LlavaForConditionalGeneration,
                          PreTrainedTokenizerFast)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
TOK_DIR = os.path.join(ROOT, "tests", "fixtures", "tokenizers")
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "models")

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IGNORE = -100


# ----------------------------------------------------------------------------
# helpers


def seed(n):
    torch.manual_seed(n)


def fresh_dir(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def load_tokenizer(name):
    """The fixture tokenizer as transformers would load it from a model folder."""
    d = os.path.join(TOK_DIR, name)
    with open(os.path.join(d, "special_tokens_map.json")) as f:
        special = json.load(f)
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"), **special)
    tok.padding_side = "right"
    return tok


def tokenizer_vocab_size(name):
    """Number of ids the tokenizer can produce: max id + 1 over vocab and added tokens."""
    with open(os.path.join(TOK_DIR, name, "tokenizer.json")) as f:
        t = json.load(f)
    ids = list(t["model"]["vocab"].values()) + [a["id"] for a in t["added_tokens"]]
    return max(ids) + 1


def token_id(tok, text):
    i = tok.get_vocab().get(text)
    assert i is not None, f"token {text!r} missing from the tokenizer"
    return i


def copy_tokenizer(name, dst):
    src = os.path.join(TOK_DIR, name)
    for fn in sorted(os.listdir(src)):
        if fn != "expected.json":
            shutil.copy(os.path.join(src, fn), os.path.join(dst, fn))


def perturb_(model, k_bias_zero=()):
    """Adds noise to every parameter so that default inits (zero biases, unit
    norm weights, zero query tokens) cannot hide bugs. Matrices get noise of
    gain ~0.7 (std 0.7/sqrt(fan_in)) so every sublayer changes the residual
    stream visibly; 1-D params (biases, norm weights, logit_scale) get
    N(0, 0.1); embedding-like params (token/position tables, class
    embeddings, query tokens) get N(0, 0.5). The patch-embedding conv counts
    as a matrix (fan_in = C*P*P)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            table_like = any(w in name for w in ("embedding", "embed_tokens", "embed_positions",
                                                  "query_tokens"))
            if table_like and "patch_embedding" not in name:  # the patch conv is a matrix
                p.add_(torch.randn_like(p) * 0.5)
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                p.add_(torch.randn_like(p) * (0.7 / math.sqrt(fan_in)))
            else:
                p.add_(torch.randn_like(p) * 0.1)
        # keep the middle (k) third of fused qkv biases exactly zero, as in
        # real BLIP-2 checkpoints (softmax is invariant to a k bias anyway)
        for name, p in model.named_parameters():
            if any(name.endswith(s) for s in k_bias_zero):
                d = p.shape[0] // 3
                p[d:2 * d] = 0


def round_to_f16_and_bf16_(model):
    """Rounds every parameter to a value that float16 AND bfloat16 both hold
    exactly, so the same model can be stored as F32, F16 or BF16 without
    changing a single number (the few values too tiny for float16 become 0)."""
    with torch.no_grad():
        for p in model.parameters():
            r = p.to(torch.bfloat16).to(torch.float32)
            r[r.to(torch.float16).to(torch.float32) != r] = 0
            p.copy_(r)


def contiguous_f32(t):
    return t.detach().to(torch.float32).contiguous().clone()


def save_st(tensors, path):
    save_file(tensors, path, metadata={"format": "pt"})


def save_tensors(path, tensors):
    out = {}
    for k, v in tensors.items():
        v = v.detach()
        out[k] = v.contiguous().clone() if v.dtype == torch.int64 else contiguous_f32(v)
    save_st(out, path)


def pad_batch(seqs, pad_id):
    """Right-pads lists of ids -> (input_ids, attention_mask) int64 [B, T]."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(seqs), T), dtype=torch.int64)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s, dtype=torch.int64)
        mask[b, :len(s)] = 1
    return ids, mask


def prompt_answer_ids(tok, prompt, answer, eos_id):
    """Tokenizes prompt+answer as one text (special tokens added by the
    tokenizer's post-processor), appends EOS, and returns (ids, n_prompt):
    the first n_prompt ids are the prompt alone."""
    p = tok(prompt)["input_ids"]
    full = tok(prompt + answer)["input_ids"] + [eos_id]
    assert full[:len(p)] == p, f"prompt tokens change when the answer follows: {prompt!r}"
    return full, len(p)


def make_labels(input_ids, attention_mask, n_prompt):
    labels = input_ids.clone()
    for b, n in enumerate(n_prompt):
        labels[b, :n] = IGNORE
    labels[attention_mask == 0] = IGNORE
    return labels


class Capture:
    """Forward hooks that keep a module's output (or an input kwarg) alive in
    the graph with retain_grad(), so its gradient can be read after backward."""

    def __init__(self):
        self.tensors = {}
        self.handles = []

    def output(self, module, name):
        def hook(_m, _args, out):
            t = out if torch.is_tensor(out) else out[0]
            t.retain_grad()
            self.tensors[name] = t
        self.handles.append(module.register_forward_hook(hook))

    def input_kwarg(self, module, kwarg, name):
        def hook(_m, _args, kwargs):
            t = kwargs[kwarg]
            t.retain_grad()
            self.tensors[name] = t
        self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def layer_outputs(self, layers, name):
        """Keeps the output of every layer in a list under `name`."""
        self.tensors[name] = []

        def hook(_m, _args, out):
            self.tensors[name].append(out if torch.is_tensor(out) else out[0])
        for layer in layers:
            self.handles.append(layer.register_forward_hook(hook))

    def remove(self):
        for h in self.handles:
            h.remove()


def check_decoder_conventions(hidden_states, layer_outs, final_norm, logits, labels, loss):
    """Pins down the conventions the README documents: hidden_states has
    L+1 entries, [i] (1 <= i < L) is the raw output of decoder layer i-1, but
    [L] is final_norm(output of the last layer); the loss is the mean CE of
    logits[:, t] against labels[:, t+1] over labels != -100."""
    L = len(layer_outs)
    assert len(hidden_states) == L + 1
    for i in range(L - 1):
        assert torch.equal(hidden_states[i + 1], layer_outs[i])
    with torch.no_grad():
        assert torch.equal(hidden_states[L], final_norm(layer_outs[L - 1]))
        v = logits.shape[-1]
        ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, v).double(),
                                                labels[:, 1:].reshape(-1), ignore_index=IGNORE)
    assert abs(ref.item() - loss.item()) <= 1e-6 * abs(ref.item()), (ref.item(), loss.item())


def add_hidden_states(expected, prefix, hidden_states):
    for i, h in enumerate(hidden_states):
        expected[f"{prefix}.{i}"] = h


def safetensors_keys(folder):
    keys = {}
    for fn in sorted(os.listdir(folder)):
        if fn.endswith(".safetensors") and fn not in ("inputs.safetensors", "expected.safetensors"):
            for k, v in load_file(os.path.join(folder, fn)).items():
                keys[k] = v
    return keys


def rel_diff(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def summary(name, folder, inputs, expected):
    print(f"== {name}: {os.path.relpath(folder, ROOT)}")
    for title, d in (("inputs", inputs), ("expected", expected)):
        for k, v in d.items():
            print(f"   {title:8s} {k:34s} {str(v.dtype).replace('torch.', ''):8s} {list(v.shape)}")


# ----------------------------------------------------------------------------
# CLIP

# The third text holds <image> (id 1349 > eos 1348), so the legacy argmax-id
# pooling rule and the "first eos" rule pick different positions.
CLIP_TEXTS = ["a photo of a cat", "two dogs playing in the snow at night", "a <image> of a red car"]


def clip_config(vocab, bos, eos, pad):
    return CLIPConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                         hidden_act="quick_gelu", layer_norm_eps=1e-5,
                         bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, projection_dim=16),
        vision_config=dict(image_size=30, patch_size=6, num_channels=3, hidden_size=32,
                           intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=16),
        projection_dim=16,
    )


def image_processor_config_clip(size):
    return {
        "image_processor_type": "CLIPImageProcessor", "processor_class": "CLIPProcessor",
        "do_resize": True, "size": {"shortest_edge": size}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": size, "width": size},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "do_convert_rgb": True,
    }


def make_clip():
    folder = os.path.join(OUT_DIR, "clip")
    fresh_dir(folder)
    tok = load_tokenizer("clip")
    bos, eos = token_id(tok, "<|startoftext|>"), token_id(tok, "<|endoftext|>")
    cfg = clip_config(tokenizer_vocab_size("clip"), bos, eos, tok.pad_token_id)
    seed(100)
    model = CLIPModel._from_config(cfg, attn_implementation="eager").float()
    perturb_(model)
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    copy_tokenizer("clip", folder)
    write_json(os.path.join(folder, "preprocessor_config.json"), image_processor_config_clip(30))

    enc = tok(CLIP_TEXTS, padding=True, return_tensors="pt")
    seed(101)
    pixel_values = torch.randn(len(CLIP_TEXTS), 3, 30, 30)
    inputs = {"input_ids": enc["input_ids"].to(torch.int64),
              "attention_mask": enc["attention_mask"].to(torch.int64),
              "pixel_values": pixel_values}
    with torch.no_grad():
        out = model(**inputs, return_loss=True)
        # the towers alone: CLIPModel's own *_model_output.pooler_output is
        # already projected in transformers v5
        tv = model.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                              output_hidden_states=True)
        vv = model.vision_model(pixel_values=inputs["pixel_values"], output_hidden_states=True)
    expected = {
        "logits_per_image": out.logits_per_image, "logits_per_text": out.logits_per_text,
        "text_embeds": out.text_embeds, "image_embeds": out.image_embeds, "loss": out.loss,
        "text_pooled": tv.pooler_output, "vision_pooled": vv.pooler_output,
        "text_last_hidden_state": tv.last_hidden_state,
        "vision_last_hidden_state": vv.last_hidden_state,
    }
    add_hidden_states(expected, "vision_hidden_states", vv.hidden_states)
    add_hidden_states(expected, "text_hidden_states", tv.hidden_states)
    check_clip_conventions(model, inputs, out, tv, vv, eos)
    save_tensors(os.path.join(folder, "inputs.safetensors"), inputs)
    save_tensors(os.path.join(folder, "expected.safetensors"), expected)
    summary("clip", folder, inputs, expected)
    d = check_reload(folder, CLIPModel, inputs, expected, key="logits_per_image")
    print(f"   transformers reload rel diff {d:.1e}")


def check_clip_conventions(model, inputs, out, tv, vv, eos):
    ids = inputs["input_ids"]
    assert model.text_model.eos_token_id == eos != 2
    assert not torch.equal(ids.argmax(-1), (ids == eos).int().argmax(-1)), "texts don't pin the rule"
    first_eos = (ids == eos).int().argmax(-1)
    pooled = tv.last_hidden_state[torch.arange(ids.shape[0]), first_eos]
    assert torch.equal(pooled, tv.pooler_output), "CLIP EOS pooling is not 'first eos'"
    with torch.no_grad():
        assert torch.equal(vv.hidden_states[0], model.vision_model.pre_layrnorm(
            model.vision_model.embeddings(inputs["pixel_values"])))
        assert torch.equal(vv.hidden_states[-1], vv.last_hidden_state)
        assert torch.equal(model.vision_model.post_layernorm(vv.last_hidden_state[:, 0]), vv.pooler_output)
        assert torch.equal(tv.hidden_states[0], model.text_model.embeddings(ids))
        assert torch.equal(model.text_model.final_layer_norm(tv.hidden_states[-1]), tv.last_hidden_state)
        img = model.visual_projection(vv.pooler_output)
        assert torch.allclose(img / img.norm(dim=-1, keepdim=True), out.image_embeds)


# ----------------------------------------------------------------------------
# LLaVA

LLAVA_IMAGE_SEQ = 16  # (28/7)^2 patches, CLS dropped by the "default" strategy
LLAVA_SAMPLES = [
    ("USER: <image>\nWhat is this? ASSISTANT:", " a cat"),
    ("USER: <image>\nWho? ASSISTANT:", " two dogs"),
]


def llava_config(vocab, image_token, pad, bos, eos, image_size=28, image_seq=LLAVA_IMAGE_SEQ,
                 max_positions=128, text_dims=None):
    dims = dict(hidden_size=32, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2)
    dims.update(text_dims or {})
    return LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", image_size=image_size, patch_size=7,
                           hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                           num_attention_heads=4, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                           projection_dim=16),
        text_config=dict(model_type="llama", vocab_size=vocab, num_hidden_layers=2, **dims,
                         max_position_embeddings=max_positions, rms_norm_eps=1e-5,
                         rope_theta=10000.0, tie_word_embeddings=False, hidden_act="silu",
                         pad_token_id=pad, bos_token_id=bos, eos_token_id=eos),
        image_token_index=image_token, projector_hidden_act="gelu", vision_feature_layer=-2,
        vision_feature_select_strategy="default", image_seq_length=image_seq,
        pad_token_id=pad,
    )


def llava_inputs(tok, image_token):
    eos = tok.eos_token_id
    seqs, n_prompt = [], []
    for prompt, answer in LLAVA_SAMPLES:
        prompt = prompt.replace("<image>", "<image>" * LLAVA_IMAGE_SEQ)  # what LlavaProcessor does
        ids, n = prompt_answer_ids(tok, prompt, answer, eos)
        assert ids.count(image_token) == LLAVA_IMAGE_SEQ
        seqs.append(ids)
        n_prompt.append(n)
    input_ids, attention_mask = pad_batch(seqs, tok.pad_token_id)
    seed(201)
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "pixel_values": torch.randn(len(seqs), 3, 28, 28),
            "labels": make_labels(input_ids, attention_mask, n_prompt)}


def v4_config(cfg):
    """The same config with transformers-v4 key spellings."""
    cfg = json.loads(json.dumps(cfg))

    def fix(d):
        if "dtype" in d:
            d["torch_dtype"] = d.pop("dtype")
        rp = d.pop("rope_parameters", None)
        if rp is not None:
            d["rope_theta"] = rp["rope_theta"]
            d["rope_scaling"] = None if rp.get("rope_type", "default") == "default" else rp
        if "image_token_id" in d:
            d["image_token_index"] = d.pop("image_token_id")
        for v in d.values():
            if isinstance(v, dict):
                fix(v)
    fix(cfg)
    cfg["transformers_version"] = "4.46.0"
    return cfg


def make_llava():
    folder = os.path.join(OUT_DIR, "llava")
    fresh_dir(folder)
    tok = load_tokenizer("llama")
    image_token = token_id(tok, "<image>")
    cfg = llava_config(tokenizer_vocab_size("llama"), image_token, tok.pad_token_id,
                       tok.bos_token_id, tok.eos_token_id)
    seed(200)
    model = LlavaForConditionalGeneration._from_config(cfg, attn_implementation="eager").float()
    perturb_(model)
    round_to_f16_and_bf16_(model)
    model.eval()
    model.config.dtype = torch.float16  # stored as F16, as llava-hf's checkpoints are
    model.config.architectures = ["LlavaForConditionalGeneration"]
    model.config.save_pretrained(folder)
    save_st(llava_state_dict(model, "new", torch.float16), os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json")) as f:
        saved_cfg = json.load(f)
    write_json(os.path.join(folder, "config_v4.json"), v4_config(saved_cfg))
    copy_tokenizer("llama", folder)
    write_json(os.path.join(folder, "preprocessor_config.json"), image_processor_config_clip(28))

    inputs = llava_inputs(tok, image_token)
    cap = Capture()
    cap.output(model.model.multi_modal_projector, "image_features")
    cap.input_kwarg(model.model.language_model, "inputs_embeds", "inputs_embeds")
    cap.layer_outputs(model.model.language_model.layers, "layer_outputs")
    out = model(**inputs, output_hidden_states=True)
    out.loss.backward()
    cap.remove()
    check_decoder_conventions(out.hidden_states, cap.tensors["layer_outputs"],
                              model.model.language_model.norm, out.logits, inputs["labels"], out.loss)
    expected = {"logits": out.logits, "loss": out.loss,
                "last_layer_output": cap.tensors["layer_outputs"][-1],
                "image_features": cap.tensors["image_features"],
                "image_features_grad": cap.tensors["image_features"].grad,
                "inputs_embeds": cap.tensors["inputs_embeds"],
                "inputs_embeds_grad": cap.tensors["inputs_embeds"].grad}
    add_hidden_states(expected, "hidden_states", out.hidden_states)
    with torch.no_grad():
        vout = model.model.vision_tower(inputs["pixel_values"], output_hidden_states=True)
    add_hidden_states(expected, "vision_hidden_states", vout.hidden_states)
    check_llava_conventions(model, inputs, out, expected)
    save_tensors(os.path.join(folder, "inputs.safetensors"), inputs)
    save_tensors(os.path.join(folder, "expected.safetensors"), expected)
    summary("llava", folder, inputs, expected)
    d = check_reload(folder, LlavaForConditionalGeneration, inputs, expected)
    print(f"   transformers reload rel diff {d:.1e}")
    make_llava_oldkeys(folder, model, inputs, expected)


LLAVA_WIDE_IMAGE_SIZE = 56
LLAVA_WIDE_IMAGE_SEQ = 64  # (56/7)^2 patches, CLS dropped
# a 16-wide LM (head_dim 8, grouped-query attention kept) halves the vocab
# tables, which are most of the bytes, to keep the folder under 400 KB
LLAVA_WIDE_TEXT_DIMS = dict(hidden_size=16, intermediate_size=48, num_attention_heads=2,
                            num_key_value_heads=1)


def make_llava_wide():
    """llava_wide/: llava/'s tiny architecture with 64 image tokens per image
    (56x56 images, patch 7) and a 16-wide LM, so that a demonstration's image tokens outnumber
    its text tokens as in real LLaVA (576 per image): the fixture for AIM-vs-ICL
    prompt length and memory. Checkpoint, tokenizer and preprocessor only (no
    expected outputs); 1024 LM positions so that many-shot ICL prompts fit."""
    folder = os.path.join(OUT_DIR, "llava_wide")
    fresh_dir(folder)
    tok = load_tokenizer("llama")
    cfg = llava_config(tokenizer_vocab_size("llama"), token_id(tok, "<image>"), tok.pad_token_id,
                       tok.bos_token_id, tok.eos_token_id, image_size=LLAVA_WIDE_IMAGE_SIZE,
                       image_seq=LLAVA_WIDE_IMAGE_SEQ, max_positions=1024,
                       text_dims=LLAVA_WIDE_TEXT_DIMS)
    seed(250)
    model = LlavaForConditionalGeneration._from_config(cfg, attn_implementation="eager").float()
    perturb_(model)
    round_to_f16_and_bf16_(model)
    model.config.dtype = torch.float16
    model.config.architectures = ["LlavaForConditionalGeneration"]
    model.config.save_pretrained(folder)
    save_st(llava_state_dict(model, "new", torch.float16), os.path.join(folder, "model.safetensors"))
    copy_tokenizer("llama", folder)
    write_json(os.path.join(folder, "preprocessor_config.json"),
               image_processor_config_clip(LLAVA_WIDE_IMAGE_SIZE))
    n = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"llava_wide: {n / 1e3:.0f} KB, {LLAVA_WIDE_IMAGE_SEQ} image tokens per image")


def check_llava_conventions(model, inputs, out, expected):
    # image features == projector(vision hidden_states[-2] without CLS)
    with torch.no_grad():
        vh = model.model.vision_tower(inputs["pixel_values"], output_hidden_states=True)
        feats = model.model.multi_modal_projector(vh.hidden_states[-2][:, 1:])
        assert torch.equal(vh.hidden_states[0], model.model.vision_tower.pre_layrnorm(
            model.model.vision_tower.embeddings(inputs["pixel_values"])))
        # hidden_states[0] = token embeddings with image features scattered, in
        # row-major order, over the <image> positions
        emb = model.model.language_model.embed_tokens(inputs["input_ids"])
        mask = inputs["input_ids"] == model.config.image_token_id
        emb[mask] = feats.reshape(-1, feats.shape[-1])
    assert torch.allclose(feats, expected["image_features"], atol=1e-6)
    assert torch.equal(out.hidden_states[0], expected["inputs_embeds"])
    assert torch.allclose(emb, expected["inputs_embeds"], atol=1e-6)
    # the image-feature gradient is the input-embedding gradient at the <image> rows
    g = expected["inputs_embeds_grad"][mask].view_as(expected["image_features_grad"])
    assert torch.equal(g, expected["image_features_grad"])


# transformers v5 module names -> the two layouts real LLaVA checkpoints use.
# (v5's own save_pretrained writes a third one, `vision_tower.embeddings.*`
# without `vision_model.`, matching no checkpoint on the Hub, so the fixture
# files are written here from the state dict instead.)
LLAVA_LAYOUTS = {
    "new": [("model.language_model.", "model.language_model."),
            ("lm_head.", "lm_head."),
            ("model.vision_tower.", "model.vision_tower.vision_model."),
            ("model.multi_modal_projector.", "model.multi_modal_projector.")],
    "old": [("model.language_model.", "language_model.model."),
            ("lm_head.", "language_model.lm_head."),
            ("model.vision_tower.", "vision_tower.vision_model."),
            ("model.multi_modal_projector.", "multi_modal_projector.")],
}


def llava_state_dict(model, layout, dtype):
    out = {}
    for name, t in model.state_dict().items():
        for src, dst in LLAVA_LAYOUTS[layout]:
            if name.startswith(src):
                h = t.detach().to(dtype)
                assert torch.equal(h.to(torch.float32), t), f"{name} is not exact in {dtype}"
                out[dst + name[len(src):]] = h.contiguous()
                break
        else:
            raise ValueError(f"unexpected LLaVA tensor name {name}")
    return out


def write_sharded(folder, tensors, n_shards):
    """Splits tensors (in name order, balanced by bytes) into n_shards files
    plus model.safetensors.index.json, as save_pretrained does for big models."""
    names = sorted(tensors)
    total = sum(tensors[n].numel() * tensors[n].element_size() for n in names)
    shards, cur, acc = [], [], 0
    for n in names:
        cur.append(n)
        acc += tensors[n].numel() * tensors[n].element_size()
        if acc >= total * (len(shards) + 1) / n_shards and len(shards) < n_shards - 1:
            shards.append(cur)
            cur = []
    shards.append(cur)
    weight_map = {}
    for i, group in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_st({n: tensors[n].contiguous() for n in group}, os.path.join(folder, fn))
        for n in group:
            weight_map[n] = fn
    write_json(os.path.join(folder, "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": weight_map})


def check_reload(folder, cls, inputs, expected, key="logits", tol=1e-6):
    """transformers itself must load the written folder, with no missing or
    unexpected tensors, and give the same output `key`."""
    reloaded, info = cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32,
                                         output_loading_info=True)
    reloaded.eval()
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"{folder}: transformers reload: {bad}"
    with torch.no_grad():
        out = reloaded(**inputs)
    d = rel_diff(getattr(out, key), expected[key])
    assert d < tol, f"{folder}: transformers reload differs: {d}"
    return d


ALWAYS_KEPT = ("model_type", "architectures", "torch_dtype", "transformers_version")


def without_defaults(d, defaults):
    return {k: v for k, v in d.items()
            if k in ALWAYS_KEPT or isinstance(v, dict) or k not in defaults or defaults[k] != v}


def minimal_v4_config(cfg):
    """What transformers v4's save_pretrained wrote (and what real v4-era
    checkpoints such as llava-hf/llava-1.5-7b-hf carry): v4 spellings and only
    the values that differ from each config class's defaults, so a reader
    must know them (rope_theta, hidden_act, layer_norm_eps, head_dim,
    vision_feature_layer, ...)."""
    cfg = v4_config(cfg)

    def class_defaults(cls):
        d = v4_config(cls().to_dict())
        d.pop("text_config", None)
        d.pop("vision_config", None)
        return d
    out = without_defaults(cfg, class_defaults(LlavaConfig))
    out["text_config"] = without_defaults(cfg["text_config"], class_defaults(LlamaConfig))
    tc = out["text_config"]
    if tc.get("head_dim") == cfg["text_config"]["hidden_size"] // cfg["text_config"]["num_attention_heads"]:
        del tc["head_dim"]  # v4 configs have no head_dim: it is hidden_size / heads
    out["vision_config"] = without_defaults(cfg["vision_config"], class_defaults(CLIPVisionConfig))
    return out


def make_llava_oldkeys(llava_folder, model, inputs, expected):
    folder = os.path.join(OUT_DIR, "llava_oldkeys")
    fresh_dir(folder)
    write_sharded(folder, llava_state_dict(model, "old", torch.bfloat16), 2)
    with open(os.path.join(llava_folder, "config.json")) as f:
        cfg = minimal_v4_config(json.load(f))
    cfg["torch_dtype"] = "bfloat16"
    write_json(os.path.join(folder, "config.json"), cfg)
    d = check_reload(folder, LlavaForConditionalGeneration, inputs, expected)
    print(f"== llava_oldkeys: {os.path.relpath(folder, ROOT)} (old key layout, BF16, 2 shards,"
          f" minimal v4 config; transformers reload rel diff {d:.1e})")


# ----------------------------------------------------------------------------
# BLIP-2

BLIP2_QUERIES = 8
BLIP2_SAMPLES = [
    ("Question: what is this? Answer:", " a cat"),
    ("Question: what are they doing? Answer:", " they play"),
]


def blip2_config(vocab, image_token, pad, bos, eos):
    return Blip2Config(
        vision_config=dict(image_size=28, patch_size=7, hidden_size=48, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, layer_norm_eps=1e-6,
                           qkv_bias=True, hidden_act="gelu"),
        qformer_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, cross_attention_frequency=2,
                            encoder_hidden_size=48, layer_norm_eps=1e-12,
                            max_position_embeddings=64, vocab_size=64, hidden_act="gelu"),
        text_config=dict(model_type="opt", vocab_size=vocab, hidden_size=40, num_hidden_layers=2,
                         num_attention_heads=4, ffn_dim=80, do_layer_norm_before=True,
                         word_embed_proj_dim=40, max_position_embeddings=64,
                         activation_function="relu", enable_bias=True,
                         layer_norm_elementwise_affine=True, tie_word_embeddings=True,
                         pad_token_id=pad, bos_token_id=bos, eos_token_id=eos),
        num_query_tokens=BLIP2_QUERIES, image_token_index=image_token,
    )


def blip2_inputs(tok, image_token):
    """As Blip2Processor does: num_query_tokens <image> tokens, then the
    tokenizer's own encoding of the text (which starts with BOS </s>)."""
    eos = tok.eos_token_id
    seqs, n_prompt = [], []
    for prompt, answer in BLIP2_SAMPLES:
        ids, n = prompt_answer_ids(tok, prompt, answer, eos)
        seqs.append([image_token] * BLIP2_QUERIES + ids)
        n_prompt.append(BLIP2_QUERIES + n)
    input_ids, attention_mask = pad_batch(seqs, tok.pad_token_id)
    seed(301)
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "pixel_values": torch.randn(len(seqs), 3, 28, 28),
            "labels": make_labels(input_ids, attention_mask, n_prompt)}


def image_processor_config_blip(size):
    return {
        "image_processor_type": "BlipImageProcessor", "processor_class": "Blip2Processor",
        "do_resize": True, "size": {"height": size, "width": size}, "resample": 3,
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "do_convert_rgb": True,
    }


def make_blip2():
    folder = os.path.join(OUT_DIR, "blip2")
    fresh_dir(folder)
    tok = load_tokenizer("opt")
    image_token = token_id(tok, "<image>")
    cfg = blip2_config(tokenizer_vocab_size("opt"), image_token, tok.pad_token_id,
                       tok.bos_token_id, tok.eos_token_id)
    seed(300)
    model = Blip2ForConditionalGeneration._from_config(cfg, attn_implementation="eager").float()
    perturb_(model, k_bias_zero=("self_attn.qkv.bias",))
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    copy_tokenizer("opt", folder)
    write_json(os.path.join(folder, "preprocessor_config.json"), image_processor_config_blip(28))

    inputs = blip2_inputs(tok, image_token)
    cap = Capture()
    cap.output(model.language_projection, "language_projection_output")
    cap.input_kwarg(model.language_model, "inputs_embeds", "inputs_embeds")
    decoder = model.language_model.model.decoder
    cap.layer_outputs(decoder.layers, "layer_outputs")
    out = model(**inputs, output_hidden_states=True)
    out.loss.backward()
    cap.remove()
    lp = cap.tensors["language_projection_output"]
    emb = cap.tensors["inputs_embeds"]
    lm = out.language_model_outputs
    check_decoder_conventions(lm.hidden_states, cap.tensors["layer_outputs"], decoder.final_layer_norm,
                              out.logits, inputs["labels"], out.loss)
    expected = {"logits": out.logits, "loss": out.loss,
                "last_layer_output": cap.tensors["layer_outputs"][-1],
                "vision_last_hidden_state": out.vision_outputs.last_hidden_state,
                "qformer_last_hidden_state": out.qformer_outputs.last_hidden_state,
                "language_projection_output": lp, "language_projection_output_grad": lp.grad,
                "inputs_embeds": emb, "inputs_embeds_grad": emb.grad}
    add_hidden_states(expected, "hidden_states", lm.hidden_states)
    with torch.no_grad():
        vout = model.vision_model(inputs["pixel_values"], output_hidden_states=True)
    add_hidden_states(expected, "vision_hidden_states", vout.hidden_states)
    check_blip2_conventions(model, inputs, out, expected)
    save_tensors(os.path.join(folder, "inputs.safetensors"), inputs)
    save_tensors(os.path.join(folder, "expected.safetensors"), expected)
    summary("blip2", folder, inputs, expected)
    d = check_reload(folder, Blip2ForConditionalGeneration, inputs, expected)
    print(f"   transformers reload rel diff {d:.1e}")


def check_blip2_conventions(model, inputs, out, expected):
    keys = safetensors_keys(os.path.join(OUT_DIR, "blip2"))
    qkv_b = keys["vision_model.encoder.layers.0.self_attn.qkv.bias"]
    d = qkv_b.shape[0] // 3
    assert torch.all(qkv_b[d:2 * d] == 0) and not any(k.endswith("q_bias") for k in keys)
    assert "language_model.lm_head.weight" not in keys, "OPT head should be tied (absent)"
    # query outputs are scattered at the image-token positions
    emb = expected["inputs_embeds"]
    ids, am = inputs["input_ids"], inputs["attention_mask"]
    mask = ids == model.config.image_token_id
    assert torch.equal(emb[mask].view_as(expected["language_projection_output"]),
                       expected["language_projection_output"])
    g = expected["inputs_embeds_grad"][mask].view_as(expected["language_projection_output_grad"])
    assert torch.equal(g, expected["language_projection_output_grad"])
    with torch.no_grad():
        dec = model.language_model.model.decoder
        # OPT positions: cumsum(mask) * mask - 1, looked up at +2
        pos = (torch.cumsum(am, 1) * am - 1) + 2
        h0 = emb + dec.embed_positions.weight[pos]
        assert torch.allclose(h0, expected["hidden_states.0"], atol=1e-6)
        # the vision output that feeds the Q-Former is post_layernorm(whole sequence)
        vm = model.vision_model
        vh = vm(inputs["pixel_values"], output_hidden_states=True)
        assert torch.equal(vm.post_layernorm(vh.hidden_states[-1]), expected["vision_last_hidden_state"])
        assert torch.equal(vh.hidden_states[0], vm.embeddings(inputs["pixel_values"]))


# ----------------------------------------------------------------------------


def main():
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    os.makedirs(OUT_DIR, exist_ok=True)
    makers = {"clip": make_clip, "llava": make_llava, "llava_wide": make_llava_wide,
              "blip2": make_blip2}
    names = sys.argv[1:] or list(makers)
    for name in names:
        if name not in makers:
            print(f"unknown fixture {name!r}; known: {' '.join(makers)}", file=sys.stderr)
            return 2
    for name in names:
        makers[name]()
    total = 0
    for dp, _dn, fns in os.walk(OUT_DIR):
        for fn in fns:
            os.chmod(os.path.join(dp, fn), 0o644)  # safetensors writes 0600 files
            total += os.path.getsize(os.path.join(dp, fn))
    print(f"total size of {os.path.relpath(OUT_DIR, ROOT)}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
