#!/usr/bin/env python3
"""Runs `dsv4 logits` on a fixture folder (from make_fixture.py) in every feeding mode and
compares with the transformers reference logits.

    python3 tools/check_logits.py DIR [--bin PATH] [--tol 1e-4] [--chunk 37]

Exit status 1 if any mode differs by more than --tol.
"""
import argparse, os, subprocess, sys, tempfile

import numpy as np
from safetensors.numpy import load_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--bin", default=None, help="dsv4 binary (default: the release build)")
    ap.add_argument("--tol", type=float, default=1.5e-5)
    ap.add_argument("--chunk", type=int, default=37)
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = a.bin or os.path.join(
        subprocess.check_output(["swift", "build", "-c", "release", "--show-bin-path"], cwd=root, text=True).strip(), "dsv4")
    ref = load_file(os.path.join(a.dir, "reference.safetensors"))["logits"]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ["full", "decode", f"chunked={a.chunk}"]:
            out = os.path.join(tmp, "logits.safetensors")
            subprocess.run([binary, "logits", "--model", a.dir, "--input", os.path.join(a.dir, "input_ids.json"),
                            "--output", out, "--mode", mode], check=True)
            diff = float(np.abs(load_file(out)["logits"] - ref).max())
            print(f"{mode:>12}: max |Δlogit| = {diff:.3g} over {ref.shape[0]} tokens")
            ok &= diff <= a.tol
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
