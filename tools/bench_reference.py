#!/usr/bin/env python3
"""transformers (CPU torch) on a dsv4 model folder: reference logits for a short prompt, and
prefill / decode speed of the same weights, for bench/RESULTS.md.

    python3 tools/bench_reference.py DIR [--prompt-tokens 32] [--prefill-tokens 512]
        [--decode-tokens 16] [--threads 2] [--skip-speed]

Writes DIR/input_ids.json and DIR/reference.safetensors (`logits` F32 [T, vocab]) so that
tools/check_logits.py DIR compares dsv4 with it; prints one JSON line of timings.
"""
import argparse, json, os, sys, time

import torch
from safetensors.torch import save_file
from transformers import DeepseekV4Config, DeepseekV4ForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--prefill-tokens", type=int, default=512)
    ap.add_argument("--decode-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-speed", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    model = DeepseekV4ForCausalLM.from_pretrained(a.dir, dtype=torch.float32)
    model.eval()
    load_s = time.time() - t0
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(2, vocab, (a.prompt_tokens,), generator=g).tolist()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float().contiguous()
    json.dump(ids, open(os.path.join(a.dir, "input_ids.json"), "w"))
    save_file({"logits": logits}, os.path.join(a.dir, "reference.safetensors"))
    out = {"peer": "transformers", "torch": torch.__version__, "threads": a.threads, "load_seconds": round(load_s, 2)}
    if not a.skip_speed:
        with torch.no_grad():
            prompt = torch.randint(2, vocab, (1, a.prefill_tokens), generator=g)
            t0 = time.time()
            model(prompt)
            out["prefill_tokens_per_second"] = a.prefill_tokens / (time.time() - t0)
            res = model(prompt[:, :32], use_cache=True)
            cache = res.cache if hasattr(res, "cache") else res.past_key_values
            nxt = res.logits[:, -1:].argmax(-1)
            t0 = time.time()
            for _ in range(a.decode_tokens):
                res = model(nxt, cache=cache, use_cache=True)
                cache = res.cache if hasattr(res, "cache") else res.past_key_values
                nxt = res.logits[:, -1:].argmax(-1)
            out["decode_tokens_per_second"] = a.decode_tokens / (time.time() - t0)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
