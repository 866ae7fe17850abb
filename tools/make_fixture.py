#!/usr/bin/env python3
"""Build a tiny random DeepSeek-V4 model with Hugging Face transformers and write a
reference fixture for the Swift engine's tests.

Usage
-----
    python3 tools/make_fixture.py --out DIR [--seed 0] [--tokens 640] [--vocab 256]
        [--hidden 64] [--layers 6] [--heads 4] [--head-dim 64] [--rope-dim 16]
        [--q-lora 32] [--o-groups 2] [--o-lora 16] [--window 8] [--csa-ratio 4]
        [--hca-ratio 8] [--index-heads 16] [--index-head-dim 32] [--index-topk 3]
        [--experts 8] [--topk-experts 2] [--moe-inter 32] [--hash-layers 2]
        [--swiglu-limit X] [--yarn-orig 64]
        [--layer-types sliding,csa,hca,csa,hca,sliding]
        [--spelling hf|native|released] [--dtype f32|bf16]

Needs python3 with torch (CPU is enough), transformers >= 5.24 (DeepseekV4*),
safetensors and numpy.

What it writes into DIR
-----------------------
* ``input_ids.json``        JSON array of ``--tokens`` ints in [0, vocab), drawn from the seed.
* ``reference.safetensors`` tensor ``logits``, F32 [tokens, vocab]: transformers' full-sequence
                            forward ``model(input_ids[None]).logits[0]`` in float32.
* ``config.json`` + ``model.safetensors``:
  - ``--spelling hf``: exactly what ``model.save_pretrained(DIR)`` writes. NOTE: transformers
    5.24 reverses its checkpoint-conversion renames on save, so the tensor names are *mostly*
    DeepSeek's (``model.layers.L.attn.wq_a.weight``, ``...ffn.experts.E.w1.weight``,
    ``...hc_attn_fn``) but keep the ``model.`` prefix (except ``head.weight``), use
    ``model.embed_tokens.weight`` / ``model.hc_head.hc_{fn,base,scale}``, and write the main
    attention's kv_norm as ``...attn.norm.weight``. The config is transformers' own
    (``layer_types`` / ``mlp_layer_types`` / ``compress_rates`` / nested ``rope_parameters``).
  - ``--spelling native``: what ``model.save_pretrained(DIR, save_original_format=False)``
    writes: transformers' own module names, none of its reverse renames
    (``model.layers.L.self_attn.q_a_proj.weight``, ``...self_attn.sinks``,
    ``...self_attn.compressor.indexer.q_b_proj.weight``, fused
    ``model.layers.L.mlp.experts.gate_up_proj`` [E, 2I, D] and ``...experts.down_proj``
    [E, D, I], ``model.layers.L.attn_hc.fn``, ``lm_head.weight``, ...). The config is the hf one.
  - ``--spelling released``: names exactly as in DeepSeek's released checkpoints (no
    ``model.`` prefix, ``embed.weight``, ``head.weight``, ``hc_head_fn``,
    ``layers.L.attn.kv_norm.weight``, per-expert ``w1``/``w2``/``w3``, ...), and a
    released-style ``config.json`` (``compress_ratios`` with L+1 entries, flat
    ``rope_scaling``, ``num_hash_layers``, ``qk_rope_head_dim``, ...). The ratios are the
    tiny model's real ones (e.g. 0/4/8), which transformers' ``compress_ratios`` folding
    (it only knows 0/4/128) cannot parse; read the per-layer ratio from the list.
  With ``--dtype bf16`` every floating parameter is rounded to bf16 *before* the reference
  logits are computed (the model still runs in float32), so storing the weights as BF16 is
  lossless. In the released spelling hc_*, attn_sink, ape and gate.bias stay F32 (as in the
  release); in the hf spelling everything floating is BF16.

Checks (exit status 1 if one fails)
-----------------------------------
* the config transformers builds has the requested layer_types / mlp_layer_types / rope params,
  and YaRN changes some compress-RoPE frequencies;
* the SwiGLU clamps clip some gate/up pre-activations (routed and shared experts);
* the Lightning Indexer's top-k really selects (index_topk < visible entries for late tokens) and
  there is no exact tie at the k-th/(k+1)-th boundary (min gap reported; same for the MoE router);
* transformers' own consistency: token-by-token decode with the cache and chunked prefill
  (chunks of 13) reproduce the full-forward logits to 1e-4;
* the written files reload: for hf, ``from_pretrained(DIR)``; for released, transformers' loader
  (its conversion mapping) on the released names with the HF config; both must give the
  reference logits; the released names also equal the save_pretrained names modulo the known
  prefix/kv_norm differences.
"""

import argparse
import copy
import json
import math
import os
import re
import shutil
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from transformers import DeepseekV4Config, DeepseekV4ForCausalLM
from transformers.models.deepseek_v4 import configuration_deepseek_v4 as cfgmod
from transformers.models.deepseek_v4 import modeling_deepseek_v4 as mdl

SHORT_TO_LAYER_TYPE = {
    "sliding": "sliding_attention",
    "csa": "compressed_sparse_attention",
    "hca": "heavily_compressed_attention",
}

TOL = 1e-4
CHUNK = 13
FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print(f"FAIL: {msg}")


# ----------------------------------------------------------------------------------------------
# config
# ----------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokens", type=int, default=640)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--rope-dim", type=int, default=16)
    p.add_argument("--q-lora", type=int, default=32)
    p.add_argument("--o-groups", type=int, default=2)
    p.add_argument("--o-lora", type=int, default=16)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--csa-ratio", type=int, default=4)
    p.add_argument("--hca-ratio", type=int, default=8)
    p.add_argument("--index-heads", type=int, default=16)
    p.add_argument("--index-head-dim", type=int, default=32)
    p.add_argument("--index-topk", type=int, default=3)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--topk-experts", type=int, default=2)
    p.add_argument("--moe-inter", type=int, default=32)
    p.add_argument("--hash-layers", type=int, default=2)
    p.add_argument("--swiglu-limit", type=float, default=None,
                   help="SwiGLU clamp; default 1.5 (pre-activations are ~N(0,1), so ~7%% are clipped)")
    p.add_argument("--yarn-orig", type=int, default=64,
                   help="YaRN original_max_position_embeddings; max_position_embeddings = 16x this "
                        "(default 64 -> 1024, which covers the default 640 tokens)")
    p.add_argument("--layer-types", default="sliding,csa,hca,csa,hca,sliding")
    p.add_argument("--spelling", choices=["hf", "native", "released"], default="hf")
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    a = p.parse_args(argv)
    if a.swiglu_limit is None:
        a.swiglu_limit = 1.5
    return a


def build_config(a):
    short = [s.strip() for s in a.layer_types.split(",") if s.strip()]
    if len(short) != a.layers:
        sys.exit(f"--layer-types has {len(short)} entries, --layers is {a.layers}")
    bad = [s for s in short if s not in SHORT_TO_LAYER_TYPE]
    if bad:
        sys.exit(f"unknown layer type(s) {bad}; use sliding/csa/hca")
    if a.window < a.hca_ratio and "hca" in short:
        print(f"WARNING: window {a.window} < HCA ratio {a.hca_ratio}: some tokens are visible "
              "neither raw nor compressed (valid but unrealistic)")
    if a.head_dim % 2 or a.rope_dim % 2 or a.rope_dim > a.head_dim:
        sys.exit("head_dim and rope_dim must be even, rope_dim <= head_dim")
    if (a.heads * a.head_dim) % a.o_groups:
        sys.exit("heads*head_dim must be divisible by o_groups")
    if a.hash_layers > a.layers:
        sys.exit("--hash-layers > --layers")
    layer_types = [SHORT_TO_LAYER_TYPE[s] for s in short]
    mlp_layer_types = ["hash_moe"] * a.hash_layers + ["moe"] * (a.layers - a.hash_layers)
    rope_parameters = {
        "rope_type": "yarn",
        "factor": 16,
        "original_max_position_embeddings": a.yarn_orig,
        "beta_fast": 32,
        "beta_slow": 1,
    }
    cfg = DeepseekV4Config(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        moe_intermediate_size=a.moe_inter,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=1,
        head_dim=a.head_dim,
        q_lora_rank=a.q_lora,
        o_groups=a.o_groups,
        o_lora_rank=a.o_lora,
        layer_types=list(layer_types),
        mlp_layer_types=list(mlp_layer_types),
        compress_rates={"compressed_sparse_attention": a.csa_ratio,
                        "heavily_compressed_attention": a.hca_ratio},
        sliding_window=a.window,
        index_n_heads=a.index_heads,
        index_head_dim=a.index_head_dim,
        index_topk=a.index_topk,
        n_routed_experts=a.experts,
        n_shared_experts=1,
        num_experts_per_tok=a.topk_experts,
        scoring_func="sqrtsoftplus",
        norm_topk_prob=True,
        routed_scaling_factor=1.5,
        swiglu_limit=a.swiglu_limit,
        hc_mult=4,
        hc_sinkhorn_iters=20,
        hc_eps=1e-6,
        rms_norm_eps=1e-6,
        partial_rotary_factor=a.rope_dim / a.head_dim,
        rope_theta=1e4,
        compress_rope_theta=1.6e5,
        rope_parameters=dict(rope_parameters),
        max_position_embeddings=16 * a.yarn_orig,
        num_nextn_predict_layers=0,
        tie_word_embeddings=False,
        hidden_act="silu",
        bos_token_id=0,
        eos_token_id=1,
   )
    # check that transformers kept what we asked for
    if cfg.layer_types != layer_types:
        fail(f"config.layer_types {cfg.layer_types} != {layer_types}")
    if cfg.mlp_layer_types != mlp_layer_types:
        fail(f"config.mlp_layer_types {cfg.mlp_layer_types} != {mlp_layer_types}")
    if cfg.qk_rope_head_dim != a.rope_dim:
        fail(f"config.qk_rope_head_dim {cfg.qk_rope_head_dim} != {a.rope_dim}")
    rp = cfg.rope_parameters
    want_main = {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": a.rope_dim / a.head_dim}
    want_comp = dict(rope_parameters, rope_theta=1.6e5, partial_rotary_factor=a.rope_dim / a.head_dim,
                     attention_factor=1.0)
    if rp.get("main") != want_main:
        fail(f"rope_parameters['main'] = {rp.get('main')} != {want_main}")
    if rp.get("compress") != want_comp:
        fail(f"rope_parameters['compress'] = {rp.get('compress')} != {want_comp}")
    return cfg, short


# ----------------------------------------------------------------------------------------------
# weights
# ----------------------------------------------------------------------------------------------


def randomise(model, cfg, seed):
    """Overwrite every parameter/persistent buffer with seeded random values of O(1)-activation scale.

    HF initialises sinks/position_bias/hc base/e_score_correction_bias/tid2eid to zero and
    norm weights / hc scales to one; all of those get random values here too."""
    g = torch.Generator().manual_seed(seed * 1000003 + 12345)
    D, N = cfg.hidden_size, cfg.hc_mult

    def randn(shape):
        return torch.randn(shape, generator=g, dtype=torch.float32)

    sd = model.state_dict()
    new = {}
    for name, t in sd.items():
        shape = tuple(t.shape)
        leaf = name.split(".")[-1]
        if name.endswith("tid2eid"):
            V, k = shape
            E = cfg.n_routed_experts
            rows = [torch.randperm(E, generator=g)[:k] for _ in range(V)]
            v = torch.stack(rows).to(torch.int64)
        elif name == "model.embed_tokens.weight":
            v = randn(shape)
        elif name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            v = 1.0 + 0.1 * randn(shape)
        elif leaf == "sinks":
            v = randn(shape)
        elif leaf == "position_bias":
            v = 0.5 * randn(shape)
        elif leaf in ("fn", "hc_fn"):  # [mix, N*D], applied to an RMS-normalised input
            v = randn(shape) / math.sqrt(N * D)
        elif leaf in ("base", "hc_base"):
            v = 0.5 * randn(shape)
        elif leaf in ("scale", "hc_scale"):
            v = 1.0 + 0.3 * randn(shape)
        elif leaf == "e_score_correction_bias":
            v = 0.1 * randn(shape)
        elif leaf == "gate_up_proj":  # [E, 2I, D]
            v = randn(shape) / math.sqrt(shape[-1])
        elif leaf == "down_proj":  # [E, D, I]
            v = randn(shape) / math.sqrt(shape[-1])
        elif leaf == "weight" and len(shape) == 2:  # nn.Linear [out, in] (incl. grouped o_a_proj)
            v = randn(shape) / math.sqrt(shape[1])
        else:
            raise RuntimeError(f"randomise: no rule for {name} {shape}")
        new[name] = v.to(t.dtype)
    missing, unexpected = model.load_state_dict(new, strict=True)
    assert not missing and not unexpected


def round_to_bf16(model):
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.is_floating_point():
                p.copy_(p.detach().to(torch.bfloat16).to(p.dtype))
        for name, b in model.named_buffers():
            if b.is_floating_point() and name.endswith("e_score_correction_bias"):
                b.copy_(b.to(torch.bfloat16).to(b.dtype))


# ----------------------------------------------------------------------------------------------
# instrumentation: clamp fractions, top-k gaps
# ----------------------------------------------------------------------------------------------


class Stats:
    def __init__(self):
        self.active = False
        self.clip = {}  # kind -> [clipped, total]
        self.idx = {}  # layer -> dict
        self.router = {}  # layer -> dict

    def add_clip(self, kind, clipped, total):
        c = self.clip.setdefault(kind, [0, 0])
        c[0] += int(clipped)
        c[1] += int(total)


def instrument(model, cfg, stats):
    limit = cfg.swiglu_limit
    handles = []
    for li, layer in enumerate(model.model.layers):
        experts = layer.mlp.experts
        orig = experts._apply_gate

        def apply_gate(gate_up, _orig=orig):
            if stats.active:
                gate, up = gate_up.chunk(2, dim=-1)
                stats.add_clip("routed gate > L", (gate > limit).sum(), gate.numel())
                stats.add_clip("routed |up| > L", (up.abs() > limit).sum(), up.numel())
            return _orig(gate_up)

        experts._apply_gate = apply_gate

        shared = layer.mlp.shared_experts

        def hook_gate(mod, inp, out):
            if stats.active:
                stats.add_clip("shared gate > L", (out > limit).sum(), out.numel())

        def hook_up(mod, inp, out):
            if stats.active:
                stats.add_clip("shared |up| > L", (out.abs() > limit).sum(), out.numel())

        handles.append(shared.gate_proj.register_forward_hook(hook_gate))
        handles.append(shared.up_proj.register_forward_hook(hook_up))

        comp = layer.self_attn.compressor
        if isinstance(comp, mdl.DeepseekV4CSACompressor):
            m = comp.indexer.compress_rate
            k = comp.indexer.index_topk

            def hook_scores(mod, inp, out, _li=li, _m=m, _k=k):
                if not stats.active:
                    return
                scores = out[0].double()  # [S, T]  (full forward: positions 0..S-1)
                S, T = scores.shape
                selecting, gaps, rel = 0, [], []
                ties = 0
                for t in range(S):
                    vis = min((t + 1) // _m, T)
                    if vis <= _k:
                        continue
                    selecting += 1
                    s = torch.sort(scores[t, :vis], descending=True).values
                    gap = (s[_k - 1] - s[_k]).item()
                    if gap == 0.0:
                        ties += 1
                    gaps.append(gap)
                    rel.append(gap / max(s.abs().max().item(), 1e-30))
                stats.idx[_li] = dict(entries=T, selecting=selecting, queries=S, ties=ties,
                                      min_gap=min(gaps) if gaps else float("nan"),
                                      min_rel_gap=min(rel) if rel else float("nan"),
                                      median_gap=float(np.median(gaps)) if gaps else float("nan"))

            handles.append(comp.indexer.scorer.register_forward_hook(hook_scores))

        gate = layer.mlp.gate
        if isinstance(gate, mdl.DeepseekV4TopKRouter):
            def hook_router(mod, inp, out, _li=li):
                if not stats.active:
                    return
                logits = out[0].double()
                s = torch.sqrt(F.softplus(logits)) + mod.e_score_correction_bias.double()
                srt = torch.sort(s, dim=-1, descending=True).values
                k = mod.top_k
                gap = srt[:, k - 1] - srt[:, k]
                counts = torch.bincount(out[2].reshape(-1), minlength=mod.num_experts)
                stats.router[_li] = dict(min_gap=gap.min().item(), ties=int((gap == 0).sum()),
                                         expert_counts=counts.tolist())

            handles.append(gate.register_forward_hook(hook_router))
    return handles


# ----------------------------------------------------------------------------------------------
# forward passes
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def full_logits(model, ids):
    return model(ids[None], use_cache=False).logits[0].float()


@torch.no_grad()
def decode_logits(model, ids):
    out = model(ids[None, :1], use_cache=True)
    cache = out.cache
    rows = [out.logits[0]]
    for t in range(1, ids.shape[0]):
        out = model(ids[None, t:t + 1], cache=cache, use_cache=True)
        cache = out.cache
        rows.append(out.logits[0])
    return torch.cat(rows, 0).float()


@torch.no_grad()
def chunked_logits(model, ids, chunk):
    cache = None
    rows = []
    for s in range(0, ids.shape[0], chunk):
        if cache is None:
            out = model(ids[None, s:s + chunk], use_cache=True)
        else:
            out = model(ids[None, s:s + chunk], cache=cache, use_cache=True)
        cache = out.cache
        rows.append(out.logits[0])
    return torch.cat(rows, 0).float()


# ----------------------------------------------------------------------------------------------
# released spelling
# ----------------------------------------------------------------------------------------------

ATTN_LEAF = {
    "q_a_proj.weight": "wq_a.weight",
    "q_a_norm.weight": "q_norm.weight",
    "q_b_proj.weight": "wq_b.weight",
    "kv_proj.weight": "wkv.weight",
    "kv_norm.weight": "kv_norm.weight",
    "o_a_proj.weight": "wo_a.weight",
    "o_b_proj.weight": "wo_b.weight",
    "sinks": "attn_sink",
}
COMP_LEAF = {
    "kv_proj.weight": "wkv.weight",
    "gate_proj.weight": "wgate.weight",
    "position_bias": "ape",
    "kv_norm.weight": "norm.weight",
}
LAYER_LEAF = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "attn_hc.fn": "hc_attn_fn",
    "attn_hc.base": "hc_attn_base",
    "attn_hc.scale": "hc_attn_scale",
    "ffn_hc.fn": "hc_ffn_fn",
    "ffn_hc.base": "hc_ffn_base",
    "ffn_hc.scale": "hc_ffn_scale",
    "mlp.gate.weight": "ffn.gate.weight",
    "mlp.gate.e_score_correction_bias": "ffn.gate.bias",
    "mlp.gate.tid2eid": "ffn.gate.tid2eid",
    "mlp.shared_experts.gate_proj.weight": "ffn.shared_experts.w1.weight",
    "mlp.shared_experts.up_proj.weight": "ffn.shared_experts.w3.weight",
    "mlp.shared_experts.down_proj.weight": "ffn.shared_experts.w2.weight",
}
TOP_LEVEL = {
    "model.embed_tokens.weight": "embed.weight",
    "lm_head.weight": "head.weight",
    "model.norm.weight": "norm.weight",
    "model.hc_head.hc_fn": "hc_head_fn",
    "model.hc_head.hc_base": "hc_head_base",
    "model.hc_head.hc_scale": "hc_head_scale",
}


def to_released(sd, inter):
    """transformers state_dict -> {released name: tensor} (transformers' conversion_mapping.py, "deepseek_v4")."""
    out = {}

    def put(k, v):
        assert k not in out, k
        out[k] = v.contiguous()

    for name, t in sd.items():
        if name in TOP_LEVEL:
            put(TOP_LEVEL[name], t)
            continue
        m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", name)
        if not m:
            raise RuntimeError(f"unmapped key {name}")
        L, rest = int(m.group(1)), m.group(2)
        pre = f"layers.{L}."
        if rest in LAYER_LEAF:
            put(pre + LAYER_LEAF[rest], t)
        elif rest.startswith("self_attn.compressor.indexer."):
            leaf = rest[len("self_attn.compressor.indexer."):]
            if leaf == "q_b_proj.weight":
                put(pre + "attn.indexer.wq_b.weight", t)
            elif leaf == "scorer.weights_proj.weight":
                put(pre + "attn.indexer.weights_proj.weight", t)
            elif leaf in COMP_LEAF:
                put(pre + "attn.indexer.compressor." + COMP_LEAF[leaf], t)
            else:
                raise RuntimeError(f"unmapped key {name}")
        elif rest.startswith("self_attn.compressor."):
            leaf = rest[len("self_attn.compressor."):]
            if leaf not in COMP_LEAF:
                raise RuntimeError(f"unmapped key {name}")
            put(pre + "attn.compressor." + COMP_LEAF[leaf], t)
        elif rest.startswith("self_attn."):
            leaf = rest[len("self_attn."):]
            if leaf not in ATTN_LEAF:
                raise RuntimeError(f"unmapped key {name}")
            put(pre + "attn." + ATTN_LEAF[leaf], t)
        elif rest == "mlp.experts.gate_up_proj":  # [E, 2I, D]: rows [0,I) = w1 (gate), [I,2I) = w3 (up)
            assert t.shape[1] == 2 * inter
            for e in range(t.shape[0]):
                put(pre + f"ffn.experts.{e}.w1.weight", t[e, :inter])
                put(pre + f"ffn.experts.{e}.w3.weight", t[e, inter:])
        elif rest == "mlp.experts.down_proj":  # [E, D, I]
            for e in range(t.shape[0]):
                put(pre + f"ffn.experts.{e}.w2.weight", t[e])
        else:
            raise RuntimeError(f"unmapped key {name}")
    return out


def released_keeps_f32(name):
    leaf = name.split(".")[-1]
    return (leaf.startswith("hc_") or leaf in ("attn_sink", "ape")
            or name.endswith("ffn.gate.bias"))


def released_config(a, short):
    ratio = {"sliding": 0, "csa": a.csa_ratio, "hca": a.hca_ratio}
    return {
        "architectures": ["DeepseekV4ForCausalLM"],
        "model_type": "deepseek_v4",
        "vocab_size": a.vocab,
        "hidden_size": a.hidden,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "num_key_value_heads": 1,
        "head_dim": a.head_dim,
        "qk_rope_head_dim": a.rope_dim,
        "q_lora_rank": a.q_lora,
        "o_groups": a.o_groups,
        "o_lora_rank": a.o_lora,
        "sliding_window": a.window,
        "compress_ratios": [ratio[s] for s in short] + [0],
        "compress_rope_theta": 160000.0,
        "rope_theta": 10000.0,
        "rope_scaling": {
            "type": "yarn",
            "factor": 16,
            "original_max_position_embeddings": a.yarn_orig,
            "beta_fast": 32,
            "beta_slow": 1,
        },
        "max_position_embeddings": 16 * a.yarn_orig,
        "index_n_heads": a.index_heads,
        "index_head_dim": a.index_head_dim,
        "index_topk": a.index_topk,
        "n_routed_experts": a.experts,
        "n_shared_experts": 1,
        "num_experts_per_tok": a.topk_experts,
        "moe_intermediate_size": a.moe_inter,
        "scoring_func": "sqrtsoftplus",
        "topk_method": "noaux_tc",
        "norm_topk_prob": True,
        "routed_scaling_factor": 1.5,
        "swiglu_limit": a.swiglu_limit,
        "num_hash_layers": a.hash_layers,
        "hc_mult": 4,
        "hc_sinkhorn_iters": 20,
        "hc_eps": 1e-6,
        "rms_norm_eps": 1e-6,
        "num_nextn_predict_layers": 0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "torch_dtype": "bfloat16" if a.dtype == "bf16" else "float32",
    }


def check_released_config_roundtrip(path, cfg):
    """Does transformers' legacy-key folding reproduce our schedule from the released config?"""
    raw = json.load(open(path))
    try:
        rt = DeepseekV4Config.from_pretrained(os.path.dirname(path))
        plain = "ok"
    except Exception as e:  # KeyError for ratios other than 0/4/128
        rt = None
        plain = f"{type(e).__name__}: {e}"
    print(f"released config.json -> DeepseekV4Config.from_pretrained: {plain}")
    if rt is None:
        # Retry teaching transformers the tiny ratios, with compress_rates from the ratios.
        csa = cfg.compress_rates["compressed_sparse_attention"]
        hca = cfg.compress_rates["heavily_compressed_attention"]
        saved = dict(cfgmod._COMPRESS_RATIO_TO_LAYER_TYPE)
        cfgmod._COMPRESS_RATIO_TO_LAYER_TYPE.update({csa: "compressed_sparse_attention",
                                                     hca: "heavily_compressed_attention"})
        try:
            kw = {k: v for k, v in raw.items() if k not in ("architectures", "model_type")}
            rt = DeepseekV4Config(**kw, compress_rates=dict(cfg.compress_rates))
        finally:
            cfgmod._COMPRESS_RATIO_TO_LAYER_TYPE.clear()
            cfgmod._COMPRESS_RATIO_TO_LAYER_TYPE.update(saved)
        print("  retried with the tiny ratios added to _COMPRESS_RATIO_TO_LAYER_TYPE "
              "and compress_rates passed explicitly")
    checks = {
        "layer_types": (rt.layer_types, cfg.layer_types),
        "mlp_layer_types": (rt.mlp_layer_types, cfg.mlp_layer_types),
        "compress_rates": (rt.compress_rates, cfg.compress_rates),
        "qk_rope_head_dim": (rt.qk_rope_head_dim, cfg.qk_rope_head_dim),
        # transformers leaves rope_scaling's legacy "type" key next to "rope_type"; ignore it
        "rope_parameters": ({k: {kk: vv for kk, vv in v.items() if kk != "type"}
                             for k, v in rt.rope_parameters.items()}, cfg.rope_parameters),
        "compress_inv_freq": (mdl.DeepseekV4RotaryEmbedding(rt).compress_inv_freq.tolist(),
                              mdl.DeepseekV4RotaryEmbedding(cfg).compress_inv_freq.tolist()),
        "main_inv_freq": (mdl.DeepseekV4RotaryEmbedding(rt).main_inv_freq.tolist(),
                          mdl.DeepseekV4RotaryEmbedding(cfg).main_inv_freq.tolist()),
        "max_position_embeddings": (rt.max_position_embeddings, cfg.max_position_embeddings),
        "swiglu_limit": (rt.swiglu_limit, cfg.swiglu_limit),
    }
    for key, (got, want) in checks.items():
        if got != want:
            fail(f"released config round trip: {key} {got} != {want}")
    print(f"  round trip of layer_types/mlp_layer_types/compress_rates/rope: "
          f"{'ok' if all(g == w for g, w in checks.values()) else 'MISMATCH'}")
    return plain


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


def main():
    a = parse_args()
    os.makedirs(a.out, exist_ok=True)
    cfg, short = build_config(a)

    torch.manual_seed(a.seed)
    model = DeepseekV4ForCausalLM(cfg).float().eval()
    randomise(model, cfg, a.seed)
    if a.dtype == "bf16":
        round_to_bf16(model)
    n_params = sum(p.numel() for p in model.parameters())

    # YaRN really changes some compress frequencies?
    rot = model.model.rotary_emb
    d = a.rope_dim
    plain = 1.0 / (1.6e5 ** (torch.arange(0, d, 2, dtype=torch.float) / d))
    changed = (~torch.isclose(rot.compress_inv_freq, plain, rtol=1e-6)).sum().item()
    if changed == 0:
        fail("YaRN changes no compress-RoPE frequency")
    if rot.compress_attention_scaling != 1.0:
        fail(f"compress attention scaling {rot.compress_attention_scaling} != 1")

    g = torch.Generator().manual_seed(a.seed)
    ids = torch.randint(0, a.vocab, (a.tokens,), generator=g, dtype=torch.int64)

    stats = Stats()
    handles = instrument(model, cfg, stats)
    stats.active = True
    ref = full_logits(model, ids)
    stats.active = False
    for h in handles:
        h.remove()

    if not torch.isfinite(ref).all():
        fail("non-finite reference logits")

    # Perturbation check: the same weights in float64. transformers still does a few steps in
    # fp32 (softmaxes, norms), so this mostly measures rounding noise; a large difference means a
    # near-tie in an indexer/router top-k flipped, i.e. the fixture would be fragile for an fp32
    # engine that rounds differently.
    m64 = copy.deepcopy(model).double()
    m64.set_experts_implementation("eager")  # the default grouped_mm backend has no float64
    with torch.no_grad():
        ref64 = m64(ids[None], use_cache=False).logits[0].double()
    del m64
    d_f64 = (ref64 - ref.double()).abs().max().item()
    if not d_f64 <= 1e-3:
        fail(f"float64 vs float32 forward max|diff| {d_f64:.3g} > 1e-3: fragile top-k, try another seed")

    dec = decode_logits(model, ids)
    chk = chunked_logits(model, ids, CHUNK)
    d_dec = (dec - ref).abs().max().item()
    d_chk = (chk - ref).abs().max().item()
    if not d_dec <= TOL:
        fail(f"decode vs full max|diff| {d_dec:.3g} > {TOL}")
    if not d_chk <= TOL:
        fail(f"chunked({CHUNK}) vs full max|diff| {d_chk:.3g} > {TOL}")

    # clip fractions
    for kind in ("routed gate > L", "routed |up| > L", "shared gate > L", "shared |up| > L"):
        c, n = stats.clip.get(kind, [0, 0])
        if c == 0:
            fail(f"swiglu clamp never triggers ({kind}); lower --swiglu-limit")
    # indexer
    if any(s in ("csa",) for s in short):
        if not stats.idx:
            fail("no indexer scores recorded")
        for li, s in stats.idx.items():
            if s["selecting"] == 0:
                fail(f"layer {li}: indexer top-k never selects (index_topk >= visible entries)")
            if s["ties"]:
                fail(f"layer {li}: {s['ties']} exact ties at the indexer top-k boundary")
    for li, s in stats.router.items():
        if s["ties"]:
            fail(f"layer {li}: {s['ties']} exact ties at the router top-k boundary")

    # ---------------- write files ----------------
    with open(os.path.join(a.out, "input_ids.json"), "w") as f:
        json.dump(ids.tolist(), f)
        f.write("\n")
    save_file({"logits": ref.contiguous()}, os.path.join(a.out, "reference.safetensors"),
              metadata={"format": "pt"})

    for stale in ("model.safetensors", "config.json", "generation_config.json",
                  "model.safetensors.index.json"):
        p = os.path.join(a.out, stale)
        if os.path.exists(p):
            os.remove(p)

    sd_f32 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    hf_names = None
    with tempfile.TemporaryDirectory() as tmp:
        # What save_pretrained writes (used for the hf fixture and to cross-check released names)
        save_model = model
        if a.dtype == "bf16":
            save_model = DeepseekV4ForCausalLM(cfg).eval()
            save_model.load_state_dict(sd_f32)
            save_model = save_model.to(torch.bfloat16)
        hf_dir = os.path.join(tmp, "hf")
        save_model.save_pretrained(hf_dir, safe_serialization=True)
        with safe_open(os.path.join(hf_dir, "model.safetensors"), "pt") as f:
            hf_names = {k: f.get_slice(k).get_dtype() for k in f.keys()}

        if a.spelling == "native":
            native_dir = os.path.join(tmp, "native")
            save_model.save_pretrained(native_dir, safe_serialization=True, save_original_format=False)
            with safe_open(os.path.join(native_dir, "model.safetensors"), "pt") as f:
                native = set(f.keys())
            if native != set(sd_f32):
                fail(f"native names differ from the state_dict: only-file {sorted(native - set(sd_f32))[:8]}, "
                     f"only-model {sorted(set(sd_f32) - native)[:8]}")
            if not any(k.endswith("mlp.experts.gate_up_proj") for k in native):
                fail("save_original_format=False wrote no fused mlp.experts.gate_up_proj")
            for fn in os.listdir(native_dir):
                shutil.copy(os.path.join(native_dir, fn), os.path.join(a.out, fn))
        elif a.spelling == "hf":
            for fn in os.listdir(hf_dir):
                shutil.copy(os.path.join(hf_dir, fn), os.path.join(a.out, fn))
        else:
            rel = to_released(sd_f32, cfg.moe_intermediate_size)
            if a.dtype == "bf16":
                rel = {k: (v.to(torch.bfloat16) if v.is_floating_point() and not released_keeps_f32(k) else v)
                       for k, v in rel.items()}
            save_file(rel, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
            with open(os.path.join(a.out, "config.json"), "w") as f:
                json.dump(released_config(a, short), f, indent=2)
                f.write("\n")
            # cross-check with save_pretrained's reverse renames
            expect = set()
            for k in hf_names:
                k2 = k[len("model."):] if k.startswith("model.") else k
                k2 = {"embed_tokens.weight": "embed.weight", "hc_head.hc_fn": "hc_head_fn",
                      "hc_head.hc_base": "hc_head_base", "hc_head.hc_scale": "hc_head_scale"}.get(k2, k2)
                k2 = re.sub(r"^(layers\.\d+\.attn)\.norm\.weight$", r"\1.kv_norm.weight", k2)
                expect.add(k2)
            if expect != set(rel):
                fail(f"released names differ from save_pretrained's: only-ours "
                     f"{sorted(set(rel) - expect)[:8]}, only-theirs {sorted(expect - set(rel))[:8]}")
            else:
                print("released names == save_pretrained names (modulo model. prefix, "
                      "embed_tokens/hc_head.hc_*, attn.norm->attn.kv_norm): ok")

    # ---------------- reload checks ----------------
    if a.spelling in ("hf", "native"):
        re_model = DeepseekV4ForCausalLM.from_pretrained(a.out, dtype=torch.float32).eval()
        how = "from_pretrained(DIR)"
    else:
        # transformers' loader, driven by its deepseek_v4 conversion mapping, on our released names
        with tempfile.TemporaryDirectory() as tmp:
            os.symlink(os.path.abspath(os.path.join(a.out, "model.safetensors")),
                       os.path.join(tmp, "model.safetensors"))
            cfg.save_pretrained(tmp)
            re_model = DeepseekV4ForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
        how = "from_pretrained(released names, HF config)"
    re_sd = re_model.state_dict()
    bad = [k for k in sd_f32 if not torch.equal(re_sd[k].to(sd_f32[k].dtype), sd_f32[k])]
    if bad:
        fail(f"reload via {how}: {len(bad)} tensors differ, e.g. {bad[:5]}")
    d_reload = (full_logits(re_model, ids) - ref).abs().max().item()
    if d_reload != 0.0:
        fail(f"reload via {how}: logits differ by {d_reload:.3g}")
    if a.spelling == "released":
        check_released_config_roundtrip(os.path.join(a.out, "config.json"), cfg)

    # ---------------- summary ----------------
    print()
    print(f"== fixture {a.out} (spelling={a.spelling}, dtype={a.dtype}, seed={a.seed})")
    print(f"params: {n_params:,}  layers: {short}  mlp: {cfg.mlp_layer_types}")
    print(f"compress inv_freq (yarn, {changed}/{d // 2} changed): "
          f"{[f'{x:.4g}' for x in rot.compress_inv_freq.tolist()]}")
    print(f"logits: std {ref.std().item():.3f}, max|.| {ref.abs().max().item():.3f}")
    print(f"swiglu_limit {cfg.swiglu_limit}: clipped fractions " + ", ".join(
        f"{k}: {c / max(n, 1):.3%}" for k, (c, n) in stats.clip.items()))
    for li, s in sorted(stats.idx.items()):
        print(f"indexer layer {li}: {s['entries']} entries, top-{cfg.index_topk} selects for "
              f"{s['selecting']}/{s['queries']} queries, k/k+1 gap min {s['min_gap']:.3g} "
              f"(rel {s['min_rel_gap']:.3g}), median {s['median_gap']:.3g}, exact ties {s['ties']}")
    for li, s in sorted(stats.router.items()):
        print(f"router layer {li}: top-{cfg.num_experts_per_tok} k/k+1 gap min {s['min_gap']:.3g}, "
              f"ties {s['ties']}, expert counts {s['expert_counts']}")
    print(f"self-consistency: decode max|diff| {d_dec:.3g}, chunked({CHUNK}) max|diff| {d_chk:.3g}, "
          f"reload {how} max|diff| {d_reload:.3g}, float64 forward max|diff| {d_f64:.3g}")
    print("files:")
    for fn in sorted(os.listdir(a.out)):
        print(f"  {fn:28s} {os.path.getsize(os.path.join(a.out, fn)):>10,d} B")
    with safe_open(os.path.join(a.out, "model.safetensors"), "pt") as f:
        written = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    dtypes = {}
    for v in written.values():
        dtypes[v] = dtypes.get(v, 0) + 1
    print(f"model.safetensors: {len(written)} tensors, dtypes {dtypes}")
    if FAILURES:
        print(f"\n{len(FAILURES)} check(s) FAILED:")
        for f in FAILURES:
            print("  - " + f)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
