#!/usr/bin/env python3
"""ep_scale_model.py: a model on paper of expert-parallel inference of DeepSeek-V4-Flash and
V4-Pro over 2-16 hosts (issue 14, item 6). Python 3, stdlib only; nothing here is measured
when it runs: it combines the spec's dimensions, figures measured in bench/RESULTS.md, and
stated assumptions about hosts and links.

    python3 bench/ep_scale_model.py            # tables
    python3 bench/ep_scale_model.py --json     # the same numbers, machine-readable
    python3 bench/ep_scale_model.py --markdown # the compact table of bench/RESULTS.md
    python3 bench/ep_scale_model.py --check    # the bench-model byte count against the measured one

Two designs, per MoE layer:
  current  (Sources/ExpertParallel/ShardedExpertExecutor.swift) every host runs the dense part
           on every token; a host's routed experts produce fp32 partial rows of `hidden` values
           (one per token and wave it touched), sent to every other host by an all-gather per
           wave (MPI_Iallgatherv); the wave rule is the code's (min(4, busiest host's experts),
           contiguous waves of about equal rows).
  paper    (the V4 paper / DeepEP style) attention data-parallel: each token lives on one host,
           which runs its dense part; the token's activation is dispatched once to each other
           host owning one of its experts, and each remote (token, expert) output is sent back
           (combine). Bytes are given in fp32 (dsv4's exact mode, like-for-like with `current`)
           and, in the text, for FP8 dispatch + BF16 combine (DeepSeek's deployment format).

Times per step on the busiest host (routing: uniform over experts, each token 6 distinct
experts; Monte Carlo with a fixed seed, the code's wave rule replayed):
  compute = max(bytes read / (memory bandwidth x decode fraction), FLOPs / achievable FLOP/s)
            for the dense part and for the host's routed experts, summed;
  comm    = per MoE layer, latency x messages + bytes received per host / link bandwidth;
  exposed = without waves all of comm; with W waves max(last wave's comm, comm - the experts'
            compute after the first wave), i.e. what the waves cannot hide.
"""
import argparse
import json
import math
import random

# MARK: - Inputs: model dimensions (shared/spec/v4-architecture.md §1.1, §1.2, §11, §12)

MODELS = {
    "V4-Flash": dict(hidden=4096, layers=43, heads=64, head_dim=512, q_lora=1024, o_groups=8, o_lora=1024,
                     experts=256, top_k=6, moe_inter=2048, vocab=129280, index_heads=64, index_head_dim=128,
                     index_topk=512, csa=21, hca=20, sliding=2, hash_layers=3, hc_mult=4),
    "V4-Pro": dict(hidden=7168, layers=61, heads=128, head_dim=512, q_lora=1536, o_groups=16, o_lora=1024,
                   experts=384, top_k=6, moe_inter=3072, vocab=129280, index_heads=64, index_head_dim=128,
                   index_topk=1024, csa=30, hca=31, sliding=0, hash_layers=3, hc_mult=4),
}
# The bench model of bench/RESULTS.md (models/bench/config.json), for --check only.
BENCH = dict(hidden=1024, layers=16, heads=16, head_dim=512, q_lora=256, o_groups=4, o_lora=256, experts=64,
             top_k=6, moe_inter=512, vocab=129280, index_heads=16, index_head_dim=128, index_topk=128, csa=7,
             hca=6, sliding=3, hash_layers=3, hc_mult=4)

# Checkpoint formats (spec §11): FP8 E4M3 + one E8M0 byte per 128x128 tile; routed experts FP4
# E2M1 (half a byte) + one E8M0 byte per 32 values; compressors, router, embedding, head BF16;
# mHC matrices fp32.
FP8, FP4, BF16, F32 = 1 + 1 / 16384, 0.5 + 1 / 32, 2.0, 4.0

# MARK: - Inputs: measured in this repository (bench/RESULTS.md), 2 vCPUs of an AMD EPYC Zen 4

MEASURED = dict(
    bench_fp8_bytes_per_token=529.8e6,  # issue 7: bytes dsv4 reads per decode token, FP8/FP4 layout
    bench_bf16_bytes_per_token=881.6e6,  # issue 7: the same weights in BF16
    decode_fraction_fp8=0.735,  # issue 7: FP8/FP4 decode, median of 8 rounds, of the read bandwidth
    prefill_fraction_fp8=0.64,  # issue 7: FP8/FP4 prefill 512, of the fp32 FMA peak
    fma_peak_per_core=115e9,  # issue 7: fp32 FMA probe, 225-234 GFLOP/s for 2 vCPUs
    fp4_decode_per_core=10.5e9,  # issue 7: one core decodes 10.3-10.9 GB/s of stored FP4 bytes
    # bench/mpi_pingpong.c, Open MPI 4.1.4, 2 ranks on this loaded host (load 3-4), 2 rounds,
    # median one-way latency:
    shm_latency_8B=(0.3e-6, 0.7e-6), shm_latency_16KB=(6.4e-6, 9.2e-6),
    tcp_loopback_latency_8B=(8.1e-6, 17.4e-6), tcp_loopback_latency_16KB=(9.1e-6, 24.9e-6),
)

# MARK: - Inputs: assumed (parameters; see RESULTS.md for the reasoning)

HOST = dict(
    mem_bw=350e9,  # one socket of 12-channel DDR5-4800 (460.8 GB/s peak), ~75 % as STREAM reaches
    cores=64,  # cores per host (per rank); 350 GB/s of FP4 needs >= 350/10.5 = 34 of them
    mem_gb=(256, 512, 768),  # host sizes asked about
    usable=0.90,  # share of a host's RAM for weights + KV (OS, activations, page tables)
)
LINKS = {  # name: (Gb/s, achieved share, one-way small-message MPI latency in seconds)
    "25GbE-TCP": (25, 0.9, 25e-6),  # kernel TCP: loopback measured 8-17 us; + NICs and a switch
    "100GbE-TCP": (100, 0.8, 25e-6),  # one TCP stream rarely fills 100 Gb/s
    "400GbE-RoCE": (400, 0.9, 4e-6),
    "IB-NDR400": (400, 0.9, 2e-6),
}
RUN = dict(decode_batches=(1, 32), prefill_chunk=4096, decode_context=32768, kv_streams=32,
           kv_context=65536, kv_dtype="bf16", max_waves=4, hosts=(2, 4, 8, 16), seed=14)

# MARK: - Weights, FLOPs and cache of one model


def weights(m):
    """Bytes of each part of the checkpoint, and bytes/FLOPs a decode token goes through."""
    D, L = m["hidden"], m["layers"]
    hd = m["heads"] * m["head_dim"]
    attn = FP8 * (m["q_lora"] * D + hd * m["q_lora"] + 512 * D + m["o_groups"] * m["o_lora"] * hd // m["o_groups"]
                  + D * m["o_groups"] * m["o_lora"])
    attn_params = m["q_lora"] * D + hd * m["q_lora"] + 512 * D + m["o_lora"] * hd + D * m["o_groups"] * m["o_lora"]
    csa_extra_params = 2 * 1024 * D + m["index_heads"] * m["index_head_dim"] * m["q_lora"] + m["index_heads"] * D + 2 * 256 * D
    csa_extra = BF16 * (2 * 1024 * D + m["index_heads"] * D + 2 * 256 * D) + FP8 * m["index_heads"] * m["index_head_dim"] * m["q_lora"]
    hca_extra_params = 2 * 512 * D
    hca_extra = BF16 * hca_extra_params
    hc_params = 2 * (2 + m["hc_mult"]) * m["hc_mult"] * m["hc_mult"] * D
    gate_params = m["experts"] * D
    expert_params = 3 * D * m["moe_inter"]
    per_layer_dense = attn + F32 * hc_params + BF16 * gate_params + FP8 * expert_params  # + shared expert
    per_layer_dense_params = attn_params + hc_params + gate_params + expert_params
    dense = L * per_layer_dense + m["csa"] * csa_extra + m["hca"] * hca_extra
    dense_params = L * per_layer_dense_params + m["csa"] * csa_extra_params + m["hca"] * hca_extra_params
    head = BF16 * m["vocab"] * D
    embed = BF16 * m["vocab"] * D
    tid2eid = 8 * m["vocab"] * m["top_k"] * m["hash_layers"]
    expert = FP4 * expert_params
    routed = expert * m["experts"] * L
    return dict(
        expert=expert, expert_params=expert_params, routed=routed,
        dense_read=dense + head + F32 * m["hc_mult"] * m["hc_mult"] * D,  # what one decode step reads
        dense_resident=dense + head + embed + tid2eid,
        dense_flops=2 * (dense_params + m["vocab"] * D),
        expert_flops=2 * expert_params,
        total_params=dense_params + m["vocab"] * D * 2 + expert_params * m["experts"] * L,
    )


def kv_bytes_per_token(m, dtype):
    """History bytes per token of context (spec §12)."""
    if dtype == "fp8":  # the paper's format as the spec derives it: 584 B per entry, 68 B per key
        return m["csa"] * (584 + 68) / 4 + m["hca"] * 584 / 128
    e = {"f32": 4, "bf16": 2}[dtype]
    return m["csa"] * (512 + 128) * e / 4 + m["hca"] * 512 * e / 128


def attention_per_token(m, ctx, dtype):
    """(bytes of cache read, FLOPs of scores and sums) of one query at depth ctx (spec §7)."""
    e = {"f32": 4, "bf16": 2, "fp8": 1.15}[dtype]
    H, d = m["heads"], m["head_dim"]
    csa_keys = 128 + min(m["index_topk"], ctx // 4)
    hca_keys = 128 + ctx // 128
    rd = m["csa"] * (csa_keys * 512 + (ctx // 4) * m["index_head_dim"]) * e + m["hca"] * hca_keys * 512 * e \
        + m["sliding"] * 128 * 512 * e
    fl = 4 * H * d * (m["csa"] * csa_keys + m["hca"] * hca_keys + m["sliding"] * 128) \
        + 2 * m["csa"] * (ctx // 4) * m["index_heads"] * m["index_head_dim"]
    return rd, fl


# MARK: - Routing and the two designs' traffic (Monte Carlo, fixed seed)


def route(rng, m, tokens):
    return [rng.sample(range(m["experts"]), m["top_k"]) for _ in range(tokens)]


def owner(m, K, e):
    return e * K // m["experts"]  # contiguous blocks, the default placement


def current_layer(m, K, routing, max_waves):
    """The code's wave rule: rows each host sends per wave, experts per host."""
    T = len(routing)
    buckets = {}
    for t, es in enumerate(routing):
        for e in es:
            buckets.setdefault(e, []).append(t)
    used = [[e for e in sorted(buckets) if owner(m, K, e) == r] for r in range(K)]
    W = max(1, min(max_waves, max(len(u) for u in used)))
    rows_sent = []  # per host, rows over all waves
    for r in range(K):
        total = sum(len(buckets[e]) for e in used[r])
        before, touched = 0, [set() for _ in range(W)]
        for e in used[r]:
            w = 0 if total == 0 else min(W - 1, before * W // total)
            touched[w].update(buckets[e])
            before += len(buckets[e])
        rows_sent.append(sum(len(s) for s in touched))
    rows = [sum(len(buckets[e]) for e in u) for u in used]
    return dict(W=W, rows_sent=rows_sent, experts=[len(u) for u in used], rows=rows)


def paper_layer(m, K, routing):
    """Dispatch: token -> each other host owning one of its experts; combine: each remote
    (token, expert) output back. Token t lives on host t mod K."""
    T = len(routing)
    disp = [0] * K  # messages (rows) received per host
    comb = [0] * K
    used = [set() for _ in range(K)]
    rows = [0] * K
    for t, es in enumerate(routing):
        home = t % K
        hosts = set()
        for e in es:
            h = owner(m, K, e)
            used[h].add(e)
            rows[h] += 1
            if h != home:
                hosts.add(h)
                comb[home] += 1
        for h in hosts:
            disp[h] += 1
    return dict(disp=disp, comb=comb, experts=[len(u) for u in used], rows=rows)


def sample(m, K, tokens, design, trials, rng, max_waves):
    """Averages over trials of one MoE layer's figures (busiest host for compute)."""
    acc = {}
    for _ in range(trials):
        r = route(rng, m, tokens)
        if design == "current":
            one = current_layer(m, K, r, 1)
            x = current_layer(m, K, r, max_waves)
            tot1, totW = sum(one["rows_sent"]), sum(x["rows_sent"])
            f = dict(
                rows_net_1=tot1 * (K - 1),  # rows received, all hosts together
                rows_net_W=totW * (K - 1),
                host_rows_1=max(tot1 - s for s in one["rows_sent"]),  # received by the busiest host
                host_rows_W=max(totW - s for s in x["rows_sent"]),
                W=x["W"], max_experts=max(x["experts"]), max_rows=max(x["rows"]))
        else:
            x = paper_layer(m, K, r)
            f = dict(disp_net=sum(x["disp"]), comb_net=sum(x["comb"]),
                     host_disp=max(x["disp"]), host_comb=max(x["comb"]),
                     W=max(1, min(max_waves, max(x["experts"]))), max_experts=max(x["experts"]), max_rows=max(x["rows"]))
        for k, v in f.items():
            acc[k] = acc.get(k, 0) + v / trials
    return acc


# MARK: - Times


def step(m, w, K, design, phase, tokens, host, links, run, rng):
    """One step of `tokens` tokens in all (per host for paper prefill: see the docstring)."""
    D = m["hidden"]
    eff_bw = host["mem_bw"] * MEASURED["decode_fraction_fp8"]
    eff_fl = host["cores"] * MEASURED["fma_peak_per_core"] * MEASURED["prefill_fraction_fp8"]
    trials = 2000 if tokens == 1 else (200 if tokens <= 64 else 3)
    s = sample(m, K, tokens, design, trials, rng, run["max_waves"])
    dense_tokens = tokens if design == "current" else math.ceil(tokens / K)  # tokens whose dense part the busiest host runs
    if phase == "decode":
        kv_rd, att_fl = attention_per_token(m, run["decode_context"], run["kv_dtype"])
    else:  # a chunk from depth 0: the mean over its positions
        n = run["prefill_chunk"]
        pts = [attention_per_token(m, c, run["kv_dtype"]) for c in range(0, n, 256)]
        kv_rd, att_fl = (sum(p[i] for p in pts) / len(pts) for i in (0, 1))
    t_dense = max((w["dense_read"] + dense_tokens * kv_rd) / eff_bw, dense_tokens * (w["dense_flops"] + att_fl) / eff_fl)
    t_exp_layer = max(s["max_experts"] * w["expert"] / eff_bw, s["max_rows"] * w["expert_flops"] / eff_fl)
    L = m["layers"]
    t_compute = t_dense + L * t_exp_layer
    W = s["W"]
    if design == "current":
        row = 4 * D
        net_tok_layer = s["rows_net_W"] * row / tokens
        net_tok_layer_1 = s["rows_net_1"] * row / tokens
        host_bytes_1, host_bytes_W = s["host_rows_1"] * row, s["host_rows_W"] * row
        hops = max(1, math.ceil(math.log2(K)))  # recursive doubling / Bruck all-gather
        msgs_1, msgs_W, msgs_last = hops, W * hops, hops
        exposed_bytes_last = host_bytes_W / W
    else:
        disp_b, comb_b = 4 * D, 4 * D  # fp32, like-for-like; FP8/BF16 in the text
        net_tok_layer = (s["disp_net"] * disp_b + s["comb_net"] * comb_b) / tokens
        net_tok_layer_1 = net_tok_layer
        # DeepSeek's deployment format: FP8 dispatch (a ue8m0 byte per 128 values), BF16 combine
        net_tok_layer_fp8 = (s["disp_net"] * D * (1 + 1 / 128) + s["comb_net"] * 2 * D) / tokens
        host_bytes_1 = host_bytes_W = s["host_disp"] * disp_b + s["host_comb"] * comb_b
        msgs_1, msgs_W, msgs_last = 2, 2 * W, 2  # dispatch, then combine (each to all peers at once)
        exposed_bytes_last = host_bytes_W / W
    if design == "current":
        net_tok_layer_fp8 = None
    window = t_exp_layer * (W - 1) / W  # compute the waves after the first can hide behind
    out = dict(model=None, K=K, design=design, phase=phase, tokens=tokens, waves=round(W, 2),
               net_bytes_per_token_layer=net_tok_layer, net_bytes_per_token_layer_one_wave=net_tok_layer_1,
               net_bytes_per_token_layer_fp8_bf16=net_tok_layer_fp8,
               host_bytes_per_step=L * host_bytes_W, t_compute_ms=t_compute * 1e3, t_dense_ms=t_dense * 1e3,
               t_experts_ms=L * t_exp_layer * 1e3, tok_s_compute=tokens / t_compute)
    # What the links must do: everything but the last wave hides behind the experts' compute
    # (a bandwidth at zero latency, a latency at infinite bandwidth) ...
    out["bw_hide_gbps"] = host_bytes_W * 8 / (t_exp_layer) / 1e9 if W > 1 else None
    out["lat_hide_us"] = t_exp_layer / W / (msgs_W / W) * 1e6 if W > 1 else None
    # ... and what stays exposed costs at most 10 % of the compute time: the bandwidth at zero
    # latency and the latency at infinite bandwidth for which
    # max(last wave, all waves - window) <= budget.
    budget = 0.10 * t_compute / L
    out["bw_10pct_gbps"] = max(exposed_bytes_last / budget, host_bytes_W / (budget + window)) * 8 / 1e9
    out["lat_10pct_us"] = min(budget / msgs_last, (budget + window) / msgs_W) * 1e6
    for name, (gbps, share, lat) in links.items():
        bw = gbps * 1e9 / 8 * share
        c1 = msgs_1 * lat + host_bytes_1 / bw
        cW = msgs_W * lat + host_bytes_W / bw
        exposed = max(msgs_last * lat + exposed_bytes_last / bw, cW - window)
        out["tok_s_" + name] = (tokens / (t_compute + L * c1), tokens / (t_compute + L * exposed))
    return out


def memory(m, w, K, run):
    kv = kv_bytes_per_token(m, run["kv_dtype"]) * run["kv_streams"] * run["kv_context"]
    experts_per_host = math.ceil(m["experts"] / K)
    routed = w["expert"] * experts_per_host * m["layers"]
    return dict(routed=routed, dense=w["dense_resident"], kv_current=kv, kv_paper=kv / K,
                current=routed + w["dense_resident"] + kv, paper=routed + w["dense_resident"] + kv / K)


def smallest_k(m, w, run, gb, design):
    for K in range(1, 65):
        if memory(m, w, K, run)[design] <= gb * 1e9 * HOST["usable"]:
            return K
    return None


# MARK: - Report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="the compact table of bench/RESULTS.md")
    ap.add_argument("--mem-bw", type=float, default=HOST["mem_bw"] / 1e9, help="GB/s per host (default 350)")
    ap.add_argument("--cores", type=int, default=HOST["cores"], help="cores per host (default 64)")
    ap.add_argument("--kv-dtype", default=RUN["kv_dtype"], choices=("f32", "bf16", "fp8"))
    a = ap.parse_args()
    HOST["mem_bw"], HOST["cores"], RUN["kv_dtype"] = a.mem_bw * 1e9, a.cores, a.kv_dtype

    bw = weights(BENCH)
    bench_read = bw["dense_read"] + bw["routed"] * BENCH["top_k"] / BENCH["experts"] + BF16 * BENCH["hidden"]
    check = dict(bench_fp8_bytes_per_token_model=bench_read, measured=MEASURED["bench_fp8_bytes_per_token"])
    if a.check:
        print(json.dumps(check, indent=1))
        return

    rng = random.Random(RUN["seed"])
    rows, mem = [], []
    for name, m in MODELS.items():
        w = weights(m)
        for K in RUN["hosts"]:
            for design in ("current", "paper"):
                for b in RUN["decode_batches"]:
                    rows.append(step(m, w, K, design, "decode", b, HOST, LINKS, RUN, rng) | dict(model=name))
                n = RUN["prefill_chunk"] * (1 if design == "current" else K)
                rows.append(step(m, w, K, design, "prefill", n, HOST, LINKS, RUN, rng) | dict(model=name))
            mm = memory(m, w, K, RUN)
            mem.append(dict(model=name, K=K, **{k: v / 1e9 for k, v in mm.items()}))
    fits = {name: {d: {gb: smallest_k(m, weights(m), RUN, gb, d) for gb in HOST["mem_gb"]} for d in ("current", "paper")}
            for name, m in MODELS.items()}
    models = {name: {k: v for k, v in weights(m).items()} for name, m in MODELS.items()}

    if a.json:
        print(json.dumps(dict(inputs=dict(host=HOST, links=LINKS, run=RUN, measured=MEASURED), check=check,
                              weights=models, kv_bytes_per_token={n: kv_bytes_per_token(m, RUN["kv_dtype"]) for n, m in MODELS.items()},
                              steps=rows, memory=mem, smallest_k=fits), indent=1, default=str))
        return

    print(f"host: {HOST['mem_bw']/1e9:.0f} GB/s x {MEASURED['decode_fraction_fp8']} (decode), {HOST['cores']} cores x "
          f"{MEASURED['fma_peak_per_core']/1e9:.0f} GFLOP/s x {MEASURED['prefill_fraction_fp8']} (prefill); "
          f"KV {RUN['kv_dtype']}, decode at depth {RUN['decode_context']}")
    print(f"check: bench model FP8/FP4 bytes per decode token, model {bench_read/1e6:.1f} MB, measured "
          f"{MEASURED['bench_fp8_bytes_per_token']/1e6:.1f} MB")
    for n, w in models.items():
        print(f"{n}: {w['total_params']/1e9:.0f} B params; routed experts {w['routed']/1e9:.1f} GB "
              f"({w['expert']/1e6:.2f} MB each); dense resident {w['dense_resident']/1e9:.1f} GB, read per step "
              f"{w['dense_read']/1e9:.2f} GB; {w['dense_flops']/1e9:.1f} dense GFLOP per token (no attention "
              f"scores), {w['expert_flops']/1e9:.3f} GFLOP per routed expert and token per layer; KV {kv_bytes_per_token(MODELS[n], RUN['kv_dtype']):.0f} B/token")
    lk = list(LINKS)
    if a.markdown:
        print("\n| model | K | step | design | net KB /token /layer | per host MB /step | link for ≤10 %: Gb/s, µs "
              "| tok/s, compute only | 25GbE TCP: no overlap / waves | 100GbE TCP | IB NDR400 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            step_name = f"decode {r['tokens']}" if r["phase"] == "decode" else f"prefill {r['tokens']}"
            net = f"{r['net_bytes_per_token_layer']/1e3:.0f}"
            if r["design"] == "current":
                net += f" ({r['net_bytes_per_token_layer_one_wave']/1e3:.0f})"
            else:
                net += f" ({r['net_bytes_per_token_layer_fp8_bf16']/1e3:.0f})"
            cells = [r["model"], str(r["K"]), step_name, r["design"], net, f"{r['host_bytes_per_step']/1e6:.1f}",
                     f"{r['bw_10pct_gbps']:.1f}, {r['lat_10pct_us']:.0f}", f"{r['tok_s_compute']:.1f}"] + \
                    [f"{r['tok_s_' + x][0]:.1f} / {r['tok_s_' + x][1]:.1f}" for x in ("25GbE-TCP", "100GbE-TCP", "IB-NDR400")]
            print("| " + " | ".join(cells) + " |")
        return
    hdr = ["model", "K", "design", "phase", "tok/step", "W", "net KB/tok/layer", "host MB/step", "compute ms",
           "bw hide Gb/s", "lat hide us", "bw 10% Gb/s", "lat 10% us", "tok/s compute"] + \
          [f"{x} no-ovl/ovl" for x in lk]
    print("\n" + " | ".join(hdr))

    def f(x, p=1):
        return "-" if x is None else f"{x:.{p}f}"
    for r in rows:
        cells = [r["model"], str(r["K"]), r["design"], r["phase"], str(r["tokens"]), f(r["waves"]),
                 f(r["net_bytes_per_token_layer"] / 1e3), f(r["host_bytes_per_step"] / 1e6), f(r["t_compute_ms"]),
                 f(r["bw_hide_gbps"]), f(r["lat_hide_us"]), f(r["bw_10pct_gbps"]), f(r["lat_10pct_us"]),
                 f(r["tok_s_compute"])] + [f"{r['tok_s_' + x][0]:.1f}/{r['tok_s_' + x][1]:.1f}" for x in lk]
        print(" | ".join(cells))
    print("\nmemory per host, GB (routed experts / K + dense + KV of "
          f"{RUN['kv_streams']} streams x {RUN['kv_context']} tokens; current: every host holds all KV)")
    print("model | K | routed | dense | KV current | KV paper | total current | total paper")
    for x in mem:
        print(f"{x['model']} | {x['K']} | {x['routed']:.0f} | {x['dense']:.1f} | {x['kv_current']:.1f} | "
              f"{x['kv_paper']:.1f} | {x['current']:.0f} | {x['paper']:.0f}")
    print(f"\nsmallest K (usable {HOST['usable']:.0%} of RAM):")
    for n, d in fits.items():
        print(f"{n}: " + "; ".join(f"{des}: " + ", ".join(f"{gb} GB -> {k}" for gb, k in v.items()) for des, v in d.items()))


if __name__ == "__main__":
    main()
