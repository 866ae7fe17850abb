#!/usr/bin/env python3
"""Build a tiny random DeepSeek-V4 model in the exact layout of DeepSeek's released
checkpoints (FP8 E4M3 + E8M0 block scales, packed FP4 experts, sharded with an index) and
record transformers' logits on the dequantized weights.

Usage
-----
    python3 tools/make_released_fixture.py --out DIR [--seed 0] [--shards 3] [--fp32-out DIR2]
        [any option of tools/make_fixture.py: --hidden 160 --tokens 300 ...]

What it writes into DIR
-----------------------
* ``config.json``: released-style config (see make_fixture.py ``--spelling released``) plus
  ``quantization_config`` {quant_method fp8, fmt e4m3, scale_fmt ue8m0,
  weight_block_size [128, 128]} as in the release.
* ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json``: released names
  and dtypes:
  - F8_E4M3 with an F8_E8M0 ``<name>.scale`` [ceil(out/128), ceil(in/128)] for attn.wq_a,
    wq_b, wkv, wo_a, wo_b, attn.indexer.wq_b and ffn.shared_experts.w1/w2/w3;
  - I8 (two E2M1 values per byte, low nibble first) with an F8_E8M0 ``.scale`` [out, in/32]
    for every routed expert ``ffn.experts.E.w{1,2,3}``;
  - BF16 embed/head/norms/compressor/gate/weights_proj; F32 hc_*, ape, attn_sink, gate.bias;
    I64 tid2eid.
* with ``--fp32-out DIR2``: the same dequantized weights as dense F32 in one file with the
  same names (and the same ids / reference), the fp32 reference model.
* ``input_ids.json``, ``reference.safetensors`` (``logits`` F32 [tokens, vocab]): the model's
  full forward in float32 after its weights were replaced by their dequantized values, so the
  reference is exactly what the stored bytes mean.

Quantization (DeepSeek's ue8m0 recipe): a block's scale is 2^ceil(log2(amax / qmax)) with
qmax 448 (E4M3) or 6 (E2M1); values are rounded to nearest-even in the target format. The
script checks that decoding the written bytes with an independent numpy decoder reproduces
the reference model's weights bit for bit.

Needs torch (CPU), transformers >= 5.24, safetensors, numpy; imports make_fixture.py.
"""

import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixture as mf  # noqa: E402
from transformers import DeepseekV4ForCausalLM  # noqa: E402

E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float32)

# transformers parameter leaves stored as FP8 in the release (the released index).
FP8_HF = ("self_attn.q_a_proj.weight", "self_attn.q_b_proj.weight", "self_attn.kv_proj.weight",
          "self_attn.o_a_proj.weight", "self_attn.o_b_proj.weight",
          "self_attn.compressor.indexer.q_b_proj.weight",
          "mlp.shared_experts.gate_proj.weight", "mlp.shared_experts.up_proj.weight",
          "mlp.shared_experts.down_proj.weight")
FP8_RELEASED = (".e_proj.weight", ".h_proj.weight", "attn.wq_a.weight", "attn.wq_b.weight", "attn.wkv.weight", "attn.wo_a.weight",
                "attn.wo_b.weight", "attn.indexer.wq_b.weight", "ffn.shared_experts.w1.weight",
                "ffn.shared_experts.w2.weight", "ffn.shared_experts.w3.weight")


def pow2_scale(amax, qmax):
    """ue8m0 scale exponent: smallest e with amax / 2^e <= qmax (0 for an all-zero block)."""
    e = np.zeros_like(amax, dtype=np.int32)
    nz = amax > 0
    e[nz] = np.ceil(np.log2(amax[nz] / qmax)).astype(np.int32)
    return e


def quant_fp8(w):
    """w [out, in] float32 -> (codes uint8 [out, in], scale exponents int32 [ceil(out/128), ceil(in/128)])."""
    out, inn = w.shape
    bo, bi = -(-out // 128), -(-inn // 128)
    pad = np.zeros((bo * 128, bi * 128), dtype=np.float32)
    pad[:out, :inn] = w
    amax = np.abs(pad.reshape(bo, 128, bi, 128)).max(axis=(1, 3))
    e = pow2_scale(amax, 448.0)
    full = np.repeat(np.repeat(e, 128, 0), 128, 1)[:out, :inn]
    q = torch.from_numpy((w / np.exp2(full)).astype(np.float32)).to(torch.float8_e4m3fn)
    return q.view(torch.uint8).numpy(), e


def quant_fp4(w):
    """w [out, in] -> (packed uint8 [out, in/2], scale exponents int32 [out, in/32])."""
    out, inn = w.shape
    assert inn % 32 == 0, f"FP4 needs in % 32 == 0, got {inn}"
    amax = np.abs(w.reshape(out, inn // 32, 32)).max(axis=2)
    e = pow2_scale(amax, 6.0)
    v = w / np.exp2(np.repeat(e, 32, 1))
    mags = E2M1[:8]
    # nearest magnitude, ties to the even code (DeepSeek's / torch's round-to-nearest-even)
    d = np.abs(np.abs(v)[..., None] - mags)
    best = d.min(axis=-1, keepdims=True)
    cand = d == best
    idx = np.where(cand[..., :].sum(-1) > 1,
                   np.argmax(cand & (np.arange(8) % 2 == 0), axis=-1),
                   np.argmax(cand, axis=-1))
    codes = (idx | ((v < 0) & (idx > 0)) * 8).astype(np.uint8)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    return packed.astype(np.uint8), e


def decode_fp8(codes, e):
    """Independent numpy E4M3FN decoder (OCP FP8 spec) times the block scales."""
    c = codes.astype(np.int32)
    s, ex, m = c >> 7, (c >> 3) & 15, c & 7
    v = np.where(ex == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * np.exp2(ex - 7.0))
    v = np.where(s == 1, -v, v).astype(np.float32)
    out, inn = codes.shape
    return v * np.exp2(np.repeat(np.repeat(e, 128, 0), 128, 1)[:out, :inn]).astype(np.float32)


def decode_fp4(packed, e):
    lo, hi = packed & 15, packed >> 4
    codes = np.stack([lo, hi], axis=-1).reshape(packed.shape[0], -1)
    return E2M1[codes] * np.exp2(np.repeat(e, 32, 1)).astype(np.float32)


def e8m0(e):
    b = e + 127
    assert (b >= 0).all() and (b < 255).all()
    return torch.from_numpy(b.astype(np.uint8)).view(torch.float8_e8m0fnu)


def quantize_model(model):
    """Replace every weight the release stores in FP8/FP4 by its dequantized value, in place."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            w = p.detach().float().numpy()
            if any(name.endswith(s) for s in FP8_HF):
                q, e = quant_fp8(w)
                p.copy_(torch.from_numpy(decode_fp8(q, e)))
            elif name.endswith("mlp.experts.gate_up_proj") or name.endswith("mlp.experts.down_proj"):
                flat = w.reshape(-1, w.shape[-1])  # per row, per 32 inputs: fusing does not matter
                q, e = quant_fp4(flat)
                p.copy_(torch.from_numpy(decode_fp4(q, e).reshape(w.shape)))


def encode_released(rel):
    """{released name: dequantized tensor} -> {name: stored tensor} with scale companions."""
    out = {}
    for k, v in rel.items():
        if k.endswith(FP8_RELEASED):
            w = v.float().numpy()
            q, e = quant_fp8(w)
            assert np.array_equal(decode_fp8(q, e), w), f"FP8 round trip of {k} is not exact"
            out[k] = torch.from_numpy(q).view(torch.float8_e4m3fn)
            out[k[:-len("weight")] + "scale"] = e8m0(e)
        elif ".ffn.experts." in k:
            w = v.float().numpy()
            q, e = quant_fp4(w)
            assert np.array_equal(decode_fp4(q, e), w), f"FP4 round trip of {k} is not exact"
            out[k] = torch.from_numpy(q).view(torch.int8)
            out[k[:-len("weight")] + "scale"] = e8m0(e)
        elif v.is_floating_point() and not mf.released_keeps_f32(k):
            out[k] = v.to(torch.bfloat16)
        else:
            out[k] = v
    return out


def main():
    argv = sys.argv[1:]
    shards = 3
    if "--shards" in argv:
        i = argv.index("--shards")
        shards = int(argv[i + 1])
        del argv[i:i + 2]
    fp32_out = None
    if "--fp32-out" in argv:
        i = argv.index("--fp32-out")
        fp32_out = argv[i + 1]
        del argv[i:i + 2]
    a = mf.parse_args(argv)
    a.spelling, a.dtype = "released", "bf16"
    os.makedirs(a.out, exist_ok=True)
    cfg, short = mf.build_config(a)

    torch.manual_seed(a.seed)
    model = DeepseekV4ForCausalLM(cfg).float().eval()
    mf.randomise(model, cfg, a.seed)
    mf.round_to_bf16(model)
    quantize_model(model)

    g = torch.Generator().manual_seed(a.seed)
    ids = torch.randint(0, a.vocab, (a.tokens,), generator=g, dtype=torch.int64)
    stats = mf.Stats()
    handles = mf.instrument(model, cfg, stats)
    stats.active = True
    ref = mf.full_logits(model, ids)
    stats.active = False
    for h in handles:
        h.remove()
    if not torch.isfinite(ref).all():
        mf.fail("non-finite reference logits")
    d_dec = (mf.decode_logits(model, ids) - ref).abs().max().item()
    d_chk = (mf.chunked_logits(model, ids, mf.CHUNK) - ref).abs().max().item()
    if not (d_dec <= mf.TOL and d_chk <= mf.TOL):
        mf.fail(f"transformers self-consistency: decode {d_dec:.3g}, chunked {d_chk:.3g}")
    for li, s in stats.idx.items():
        if s["ties"] or s["selecting"] == 0:
            mf.fail(f"layer {li}: indexer ties {s['ties']}, selecting {s['selecting']}")
    for li, s in stats.router.items():
        if s["ties"]:
            mf.fail(f"layer {li}: {s['ties']} exact ties at the router top-k boundary")

    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rel = mf.to_released(sd, cfg.moe_intermediate_size)
    # A token MTP block, as the release ships one: not used by the main model, must be reported.
    gm = torch.Generator().manual_seed(a.seed + 7)
    D = a.hidden
    for nm in ("enorm", "hnorm"):
        rel[f"mtp.0.{nm}.weight"] = 1 + 0.1 * torch.randn(D, generator=gm)
    for nm in ("e_proj", "h_proj"):
        rel[f"mtp.0.{nm}.weight"] = torch.randn(D, D, generator=gm) / math.sqrt(D)
    stored = encode_released({k: (v if not k.startswith("mtp.") or "proj" not in k else
                                  torch.from_numpy(decode_fp8(*quant_fp8(v.numpy()))))
                              for k, v in rel.items()})

    for fn in os.listdir(a.out):
        if fn.endswith(".safetensors") or fn.endswith(".json"):
            os.remove(os.path.join(a.out, fn))
    with open(os.path.join(a.out, "input_ids.json"), "w") as f:
        json.dump(ids.tolist(), f)
        f.write("\n")
    save_file({"logits": ref.contiguous()}, os.path.join(a.out, "reference.safetensors"),
              metadata={"format": "pt"})

    # Shards: by layer, like the release (top-level tensors in the first and last shard).
    def shard_of(name):
        if name.startswith("layers."):
            return min(shards - 1, int(name.split(".")[1]) * shards // a.layers)
        return 0 if name.startswith("embed") else shards - 1
    groups = [dict() for _ in range(shards)]
    for k, v in stored.items():
        groups[shard_of(k)][k] = v.contiguous()
    weight_map = {}
    total = 0
    for i, grp in enumerate(groups):
        fn = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file(grp, os.path.join(a.out, fn), metadata={"format": "pt"})
        for k, v in grp.items():
            weight_map[k] = fn
            total += v.numel() * v.element_size()
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
        f.write("\n")
    conf = mf.released_config(a, short)
    conf["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                   "scale_fmt": "ue8m0", "weight_block_size": [128, 128]}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(conf, f, indent=2)
        f.write("\n")

    if fp32_out:
        # The same (dequantized) weights, dense F32, one file, same names: the fp32 reference model.
        os.makedirs(fp32_out, exist_ok=True)
        save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in rel.items()},
                  os.path.join(fp32_out, "model.safetensors"), metadata={"format": "pt"})
        plain = {k: v for k, v in conf.items() if k != "quantization_config"}
        plain["torch_dtype"] = "float32"
        with open(os.path.join(fp32_out, "config.json"), "w") as f:
            json.dump(plain, f, indent=2)
            f.write("\n")
        for fn in ("input_ids.json", "reference.safetensors"):
            shutil.copy(os.path.join(a.out, fn), os.path.join(fp32_out, fn))
        print(f"fp32 reference model (same weights, dense F32): {fp32_out}")

    dtypes = {}
    for v in stored.values():
        dtypes[str(v.dtype)] = dtypes.get(str(v.dtype), 0) + 1
    print(f"== released fixture {a.out}: {len(stored)} tensors in {shards} shards, dtypes {dtypes}")
    print(f"logits std {ref.std().item():.3f}; self-consistency decode {d_dec:.3g}, chunked {d_chk:.3g}")
    for fn in sorted(os.listdir(a.out)):
        print(f"  {fn:36s} {os.path.getsize(os.path.join(a.out, fn)):>10,d} B")
    if mf.FAILURES:
        print(f"{len(mf.FAILURES)} check(s) FAILED")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
