#!/usr/bin/env python3
"""Write Tests/Fixtures/fp-golden.json: every FP8 E4M3FN and E8M0 code point decoded by
torch (float8_e4m3fn, float8_e8m0fnu), and the 16 E2M1 nibbles decoded by torch's
float4_e2m1fn_x2 where this torch has it (else by the OCP MX table). NaN is written as null.

Usage: python3 tools/make_fp_golden.py [--out Tests/Fixtures/fp-golden.json]
"""
import argparse
import json
import math

import torch

E2M1_TABLE = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]


def values(t):
    return [None if math.isnan(v) else v for v in t.float().tolist()]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="Tests/Fixtures/fp-golden.json")
    a = p.parse_args()
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    e4m3 = values(codes.view(torch.float8_e4m3fn))
    e8m0 = values(codes.view(torch.float8_e8m0fnu))
    source = "OCP MX table"
    e2m1 = E2M1_TABLE
    if hasattr(torch, "float4_e2m1fn_x2"):
        try:
            from torch.testing._internal.common_quantized import _f4_e2m1_unpacked_to_f32  # noqa
            e2m1 = _f4_e2m1_unpacked_to_f32(torch.arange(16, dtype=torch.uint8)).tolist()
            source = "torch.testing._internal.common_quantized"
        except Exception:
            pass
    assert e2m1[:8] == E2M1_TABLE[:8]
    with open(a.out, "w") as f:
        json.dump({"torch": torch.__version__, "e4m3": e4m3, "e8m0": e8m0, "e2m1": e2m1,
                   "e2m1_source": source}, f)
        f.write("\n")
    print(f"wrote {a.out}: 256 e4m3, 256 e8m0, 16 e2m1 ({source})")


if __name__ == "__main__":
    main()
