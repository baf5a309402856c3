"""Sampler throughput: mentor's `hf` sampler against `model.generate`, side by side in one run.

Same tiny model (presets "1m" and "6m"), same prompts (batches of 64 and 256, prompt lengths 6-14 tokens), 128
new tokens for every row, 2 torch threads, fp32 on CPU. EOS is ignored by both so every row decodes exactly
128 tokens: `generate` gets a generation config with no EOS id, mentor's `sample` gets `eos_token_id=[]`;
both outputs are checked to be 128 tokens long. `generate` samples with `do_sample=True, top_k=0, top_p=1,
temperature=1` (the plain softmax, like mentor's default). Repetitions interleave the two engines (ABAB...)
after one warm-up call each, so load from other processes on a shared machine hits both alike; the table
reports medians. Nothing is compiled (no one-time compile cost).

FLOP utilisation is estimated as useful FLOPs / time / peak, where useful FLOPs = 2 * (matmul weights,
lm_head included, embedding lookup excluded) per processed token (prompt and generated) + 4 * layers *
attention width * attended length per generated token (q.k and p.v), and the peak is a measured 2048x2048
fp32 matmul on the same threads.

    nice -n 10 python benchmarks/sampler.py            # writes benchmarks/results/sampler.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import GenerationConfig

from mentor.models import build_tiny_model, build_tokenizer, count_parameters
from mentor.sampling import sample

RESULTS = Path(__file__).parent / "results"


def matmul_peak_gflops(threads: int, n: int = 2048, reps: int = 7) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times) / 1e9  # best of reps: the peak, not a noisy average


def make_prompts(tokenizer, batch: int, seed: int) -> list[list[int]]:
    """Addition prompts like `123+4567=`, 6-14 characters (tokens) long."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batch):
        a, b = (int(torch.randint(1, 10**int(torch.randint(2, 7, (1,), generator=g)), (1,), generator=g))
                for _ in range(2))
        out.append(tokenizer(f"{a}+{b}=", add_special_tokens=False)["input_ids"])
    return out


def useful_flops(model, prompts: list[list[int]], new_tokens: int) -> float:
    cfg = model.config
    embed = model.get_input_embeddings().weight.numel()
    norms = sum(p.numel() for n, p in model.named_parameters() if "norm" in n)
    matmul_params = count_parameters(model) - embed - norms + (embed if cfg.tie_word_embeddings else 0)
    processed = sum(len(p) for p in prompts) + len(prompts) * new_tokens
    width = cfg.num_attention_heads * (getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    attended = sum(len(p) + t + 1 for p in prompts for t in range(new_tokens))
    return 2.0 * matmul_params * processed + 4.0 * cfg.num_hidden_layers * width * attended


def run_generate(model, tokenizer, prompts, new_tokens, seed):
    enc = tokenizer.pad({"input_ids": prompts}, return_tensors="pt")  # left padding
    gen_cfg = GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=new_tokens,
                               min_new_tokens=0, eos_token_id=None, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(**enc, generation_config=gen_cfg)
    n_new = out.shape[1] - enc["input_ids"].shape[1]
    assert n_new == new_tokens, f"generate produced {n_new} tokens, expected {new_tokens}"
    return len(prompts) * new_tokens


def run_mentor(model, tokenizer, prompts, new_tokens, seed):
    outs = sample(model, prompts, eos_token_id=[], pad_token_id=tokenizer.pad_token_id, max_new_tokens=new_tokens,
                  vocab_size=len(tokenizer), generator=torch.Generator().manual_seed(seed), batch_size=len(prompts))
    assert all(len(o.completion_ids) == new_tokens for o in outs)
    return sum(len(o.completion_ids) for o in outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="1m,6m")
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "sampler"))
    args = ap.parse_args()

    command = " ".join(["nice -n 10 python benchmarks/sampler.py", *sys.argv[1:]])
    torch.set_num_threads(args.threads)
    tokenizer = build_tokenizer()
    load_start = os.getloadavg()
    peak = matmul_peak_gflops(args.threads)
    print(f"matmul peak (2048^2 fp32, {args.threads} threads): {peak:.1f} GFLOP/s", flush=True)
    rows = []
    for preset in args.presets.split(","):
        model = build_tiny_model(tokenizer, preset, seed=0).eval()
        for batch in map(int, args.batches.split(",")):
            prompts = make_prompts(tokenizer, batch, seed=batch)
            flops = useful_flops(model, prompts, args.new_tokens)
            engines = {"generate": run_generate, "mentor": run_mentor}
            times: dict[str, list[float]] = {k: [] for k in engines}
            for name, fn in engines.items():  # warm-up: lazy initialisation, allocator, first-call paths
                fn(model, tokenizer, prompts[:8], 8, seed=0)
            for rep in range(args.reps):
                for name, fn in engines.items():
                    t = time.perf_counter()
                    tokens = fn(model, tokenizer, prompts, args.new_tokens, seed=rep + 1)
                    times[name].append(time.perf_counter() - t)
            tokens = batch * args.new_tokens
            row = {"preset": preset, "params": count_parameters(model), "batch": batch,
                   "new_tokens": args.new_tokens, "useful_gflop": flops / 1e9}
            for name in engines:
                med = statistics.median(times[name])
                row[name] = {"seconds": times[name], "median_s": med, "tok_per_s": tokens / med,
                             "flop_util": flops / med / (peak * 1e9)}
            row["speedup"] = row["mentor"]["tok_per_s"] / row["generate"]["tok_per_s"]
            rows.append(row)
            print(f"{preset} batch {batch}: generate {row['generate']['tok_per_s']:.0f} tok/s, "
                  f"mentor {row['mentor']['tok_per_s']:.0f} tok/s, x{row['speedup']:.2f}", flush=True)
            result = {"command": command, "threads": args.threads, "matmul_peak_gflops": peak,
                      "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                      "cpus": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                      "compile_s": 0.0, "rows": rows}
            out = Path(args.out)  # rewritten after every row, so an interrupted run keeps what it measured
            out.parent.mkdir(parents=True, exist_ok=True)
            out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
            out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    lines = [
        "# Sampler throughput: mentor `hf` sampler vs `model.generate`", "",
        f"Command: `{r['command']}` — torch {r['torch']}, {r['threads']} threads, fp32, {r['cpus']} CPUs "
        f"(load average {r['loadavg_start'][0]:.1f} at start, {r['loadavg_end'][0]:.1f} at end; the machine is "
        "shared). Medians of interleaved repetitions; every row decodes exactly the stated number of tokens "
        "(EOS ignored by both). Nothing compiled.", "",
        f"Measured fp32 matmul peak (2048², {r['threads']} threads): **{r['matmul_peak_gflops']:.0f} GFLOP/s**.", "",
        "| model | batch | new tokens | generate tok/s | mentor tok/s | speed-up | generate FLOP util | "
        "mentor FLOP util |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        g, m = row["generate"], row["mentor"]
        lines.append(f"| {row['preset']} ({row['params'] / 1e6:.2f}M) | {row['batch']} | {row['new_tokens']} | "
                     f"{g['tok_per_s']:,.0f} | {m['tok_per_s']:,.0f} | **{row['speedup']:.2f}×** | "
                     f"{100 * g['flop_util']:.1f}% | {100 * m['flop_util']:.1f}% |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
