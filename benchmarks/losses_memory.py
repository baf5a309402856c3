"""Peak memory and time of log-prob gathering: `mentor.losses.gather_logprobs` (chunked, recomputed in
backward) against the usual `log_softmax(logits.float() / T).gather(...)`, forward + backward.

Each variant runs in a fresh subprocess and reports: `held_for_backward_MiB`, the bytes autograd keeps
between forward and backward beyond the logits themselves (in a real model this is held during the whole
backward pass of the network); `extra_peak_MiB`, the growth of peak RSS (CPU) or of
`torch.cuda.max_memory_allocated` (GPU) during one forward + backward above the logits and their gradient
buffer; and seconds per forward + backward. Usage:

    nice -n 10 python benchmarks/losses_memory.py --out benchmarks/results/losses_memory.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

VARIANTS = ("naive", "naive_entropy", "chunked", "chunked_entropy")


def run_one(variant: str, B: int, T: int, V: int, device: str, reps: int) -> dict:
    import torch

    from mentor.losses import gather_logprobs

    torch.manual_seed(0)
    logits = torch.randn(B, T + 1, V, device=device, requires_grad=True)
    tokens = torch.randint(0, V, (B, T), device=device)
    logits.grad = torch.zeros_like(logits)  # the gradient buffer is needed by every method: count it as base

    def step():
        shifted = logits[:, :-1]
        if variant.startswith("naive"):
            logp = torch.log_softmax(shifted.float() / 0.9, dim=-1)
            loss = logp.gather(-1, tokens[..., None]).sum()
            if variant == "naive_entropy":
                loss = loss + (logp.exp() * logp).sum()
        else:
            out = gather_logprobs(shifted, tokens, 0.9, with_entropy=variant == "chunked_entropy")
            loss = out[0].sum() - out[1].sum() if isinstance(out, tuple) else out.sum()
        loss.backward()

    held: list[int] = []

    def pack(t):
        if t.untyped_storage().data_ptr() != logits.untyped_storage().data_ptr():
            held.append(t.numel() * t.element_size())
        return t

    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()  # first step: bytes held for backward, and the peak
    if device == "cuda":
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
    else:
        extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / reps
    return {"variant": variant, "held_for_backward_MiB": sum(held) / 2**20, "extra_peak_MiB": extra / 2**20,
            "seconds_per_fwd_bwd": seconds, "logits_MiB": logits.numel() * 4 / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=128)
    ap.add_argument("--V", type=int, default=16384)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # internal: run one in this process
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_one(args.variant, args.B, args.T, args.V, args.device, args.reps)))
        return
    rows = []
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", variant, "--B", str(args.B), "--T", str(args.T),
               "--V", str(args.V), "--device", args.device, "--reps", str(args.reps)]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
        print(rows[-1], flush=True)
    by = {r["variant"]: r for r in rows}
    ratios = {
        "held_naive_over_chunked":
            by["naive"]["held_for_backward_MiB"] / max(by["chunked"]["held_for_backward_MiB"], 1e-9),
        "extra_memory_naive_over_chunked":
            by["naive"]["extra_peak_MiB"] / max(by["chunked"]["extra_peak_MiB"], 1e-9),
        "extra_memory_naive_entropy_over_chunked_entropy":
            by["naive_entropy"]["extra_peak_MiB"] / max(by["chunked_entropy"]["extra_peak_MiB"], 1e-9),
        "time_chunked_over_naive": by["chunked"]["seconds_per_fwd_bwd"] / by["naive"]["seconds_per_fwd_bwd"],
        "time_chunked_entropy_over_naive_entropy":
            by["chunked_entropy"]["seconds_per_fwd_bwd"] / by["naive_entropy"]["seconds_per_fwd_bwd"],
    }
    result = {"shape": {"B": args.B, "T": args.T, "V": args.V}, "device": args.device,
              "machine": platform.processor() or platform.machine(), "rows": rows, "ratios": ratios,
              "command": " ".join(["python", "benchmarks/losses_memory.py"] + sys.argv[1:])}
    print(json.dumps(ratios, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
