"""GPU code-path check (run on a lent GPU machine; never part of the tests): the same runs as on the CPU, on CUDA.

    PYTHONPATH=src python benchmarks/gpu_check.py --out results_dir

1. the fast Llama sampler on CUDA: its per-token log-probs equal a teacher-forced forward of the HF model on the
   sampled tokens, and the HF engine given the same generator seed samples the same tokens;
2. SFT for 3 steps in fp32 on CPU and on CUDA from the same initial weights: the losses agree;
3. SFT with bf16 autocast, GRPO, OPD + ADWIN (count-sketch audits) and OPD + EffOPD on CUDA: finite metrics.
Writes `gpu_check.json`; exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mentor.config import load_config  # noqa: E402
from mentor.runs import read_jsonl  # noqa: E402
from mentor.train import train  # noqa: E402

DEVICE = "cuda"  # --device cpu: a dry run of this script on a machine without a GPU
BASE = ["model.path=tiny:1m", "data.task=add", "data.task_args={digits: 2}", "data.num_train=512", "data.num_eval=32",
        "optim.batch_size=16", "optim.micro_batch_size=16", "sampling.max_new_tokens=24", "eval.every=0",
        "eval.size=32", "run.progress=false", "run.save_every=0", "optim.schedule=constant"]


def check_sampler(results: dict) -> None:
    from mentor.models import build_tiny_model, build_tokenizer
    from mentor.sampling import sample

    tok = build_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0).to(DEVICE).eval()
    prompts = [tok(f"{a}+{b}=", add_special_tokens=False)["input_ids"] for a, b in [(12, 34), (5, 77), (90, 9), (1, 2)]]
    kw = dict(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, max_new_tokens=32, vocab_size=len(tok))
    with torch.no_grad():
        fast = sample(model, prompts, generator=torch.Generator().manual_seed(0), engine="fast", **kw)
        hf = sample(model, prompts, generator=torch.Generator().manual_seed(0), engine="hf", **kw)
        worst = 0.0
        for p, o in zip(prompts, fast):
            ids = torch.tensor([p + o.completion_ids], device=DEVICE)
            lp = model(ids).logits[0, len(p) - 1:-1].float().log_softmax(-1)
            ref = lp.gather(1, ids[0, len(p):, None]).squeeze(1).cpu()
            worst = max(worst, float((ref - torch.tensor(o.logprobs)).abs().max()))
    same = sum(a.completion_ids == b.completion_ids for a, b in zip(fast, hf))
    results["sampler"] = {"fast_vs_forward_max_abs_logprob_diff": worst, "fast_equals_hf_tokens": f"{same}/{len(fast)}"}
    assert worst < 1e-3, worst


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]


def check_sft_cpu_vs_cuda(results: dict, tmp: Path) -> None:
    common = ["algo=sft", *BASE, "run.steps=3", "optim.lr=2e-3", "model.autocast=off"]
    train(load_config(None, common + ["run.device=cpu", f"run.out_dir={tmp / 'sft_cpu'}"]))
    train(load_config(None, common + [f"run.device={DEVICE}", f"run.out_dir={tmp / 'sft_cuda'}"]))
    a, b = losses(tmp / "sft_cpu"), losses(tmp / "sft_cuda")
    results["sft_cpu_vs_cuda"] = {"cpu": a, "cuda": b}
    assert all(abs(x - y) < 1e-3 for x, y in zip(a, b)) and len(a) == len(b) == 3, (a, b)


def check_runs(results: dict, tmp: Path) -> list[str]:
    """Each run on its own, so one failure does not hide the others; returns the names that failed."""
    from mentor.models import build_tiny_model, build_tokenizer, save_model

    tok = build_tokenizer()
    teacher = save_model(build_tiny_model(tok, "1m", seed=5), tok, tmp / "teacher")
    runs = {
        "sft_bf16": ["algo=sft", "model.autocast=auto", "run.steps=3", "optim.lr=2e-3"],
        "grpo": ["algo=grpo", "rl.group_size=4", "run.steps=3", "optim.lr=1e-4"],
        "lpo": ["algo=lpo_fwd", "rl.group_size=4", "run.steps=3", "optim.lr=1e-4"],
        "opd_adwin": ["algo=opd", f"distill.teacher={teacher}", "run.steps=6", "optim.lr=3e-4", "controllers=[adwin]",
                      "controller_args={adwin: {h0: 8, h_min: 4, probe_every: 2, probe_frac: 0.5}}"],
        "gopd_effopd": ["algo=g_opd", "distill.reward_scale=1.25", f"distill.teacher={teacher}", "run.steps=4",
                        "optim.lr=3e-4", "controllers=[effopd]", "controller_args={effopd: {val_size: 16}}"],
    }
    failed = []
    for name, o in runs.items():
        t0 = time.perf_counter()
        try:
            steps = int(next(x for x in o if x.startswith("run.steps=")).split("=")[1])
            train(load_config(None, [*BASE, *o, f"run.device={DEVICE}", f"run.out_dir={tmp / name}"]))
            recs = [r for r in read_jsonl(tmp / name / "metrics.jsonl") if r["step"] > 0]
            # an RL step whose groups all have equal rewards takes no optimizer step (no loss logged): fine here
            finite = all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in recs if "loss" in r)
            results[name] = {"steps": len(recs), "finite": finite, "seconds": time.perf_counter() - t0,
                             "last": {k: v for k, v in recs[-1].items() if isinstance(v, (int, float))}}
            assert finite and len(recs) == steps, results[name]
        except Exception:
            failed.append(name)
            results[f"error/{name}"] = traceback.format_exc()[-3000:]
            print(results[f"error/{name}"], flush=True)
    return failed


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="gpu_check")
    p.add_argument("--tmp", default="/tmp/mentor_gpu_check")
    p.add_argument("--device", default="cuda")
    a = p.parse_args()
    global DEVICE
    DEVICE = a.device
    out, tmp = Path(a.out), Path(a.tmp)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                     "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    failed = []
    for name, fn in [("sampler", lambda: check_sampler(results)), ("sft", lambda: check_sft_cpu_vs_cuda(results, tmp))]:
        try:
            fn()
        except Exception:
            failed.append(name)
            results[f"error/{name}"] = traceback.format_exc()[-3000:]
            print(results[f"error/{name}"], flush=True)
    failed += check_runs(results, tmp)
    results["failed"] = failed
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))
    print(json.dumps({k: v for k, v in results.items() if not k.startswith("error/")}, indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
