"""Learning actually happens (slow tier, minutes on 2 CPU cores): SFT to high accuracy (issue #2), RL from a weak
start (issue #3), on-policy distillation toward a teacher (issue #4). Every run is `mentor.train` on a shipped
recipe (configs/sft-add.yaml, slow-student.yaml, slow-rl.yaml, slow-opd.yaml); accuracy is greedy on held-out
prompts (the eval side of the task's train/eval partition, never trained on)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentor.config import load_config
from mentor.runs import read_jsonl
from mentor.train import train

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
QUIET = ["run.progress=false"]


def accuracy_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, held-out greedy accuracy) at every evaluation of a run."""
    return [(r["step"], r["eval/accuracy"]) for r in read_jsonl(run_dir / "metrics.jsonl") if "eval/accuracy" in r]


def final_accuracy(curve: list[tuple[int, float]]) -> float:
    """Mean of the last two evaluations: single 256-prompt evaluations move by 2-4 points between neighbours."""
    return (curve[-1][1] + curve[-2][1]) / 2


def test_sft_reaches_90_percent_on_3_digit_addition(sft_add_run):
    curve = accuracy_curve(sft_add_run)
    print("SFT accuracy curve:", curve)
    assert curve[-1][1] >= 0.90


@pytest.mark.parametrize("algo", ["grpo", "lpo_fwd"])
def test_rl_from_weak_student_gains_20_points(tmp_path, weak_student, algo):
    """Issue #3: 0/1-reward RL from a deliberately weak SFT checkpoint (configs/slow-rl.yaml: 16 prompts x 8 samples
    per step, lr 2e-4, 200 steps) raises held-out greedy accuracy by >= 20 points, GRPO and LPO_fwd alike.

    Measured from the 40.6 % student (step 375), run.seed 1 / 2 / 3 (each seed has its own held-out set; the student
    scores 40.6 / 34.4 / 41.4 % on them), 1 torch thread:
      GRPO     +26.4 / +29.9 / +27.2 points; training reward (T = 1 samples) 0.149 -> 0.364 / 0.159 -> 0.325 / 0.144 -> 0.341
      LPO_fwd  +27.6 / +28.5 / +27.6 points; training reward 0.149 -> 0.354 / 0.146 -> 0.328 / 0.149 -> 0.331
    `pytest -m slow` (2 torch threads; the student picked was step 350 at 34.8 %): GRPO +30.3, LPO_fwd +32.6 points,
    training reward 0.152 -> 0.316 and 0.144 -> 0.312. Neither wins beyond noise. At lr 1e-4 the same recipe gained
    only +20.1 (GRPO) and +21.3 (LPO_fwd) in 150 steps (seed 1), so the issue's +20 is asserted at lr 2e-4 / 200
    steps, >= 6 points under the worst run; the reward threshold 0.10 sits under the worst measured rise (+0.166)."""
    student, start_acc = weak_student
    out = tmp_path / algo
    train(load_config(ROOT / "configs" / "slow-rl.yaml", [f"algo={algo}", f"model.path={student}", f"run.out_dir={out}",
                                                          *QUIET]))
    curve = accuracy_curve(out)
    reward = [r["accuracy"] for r in read_jsonl(out / "metrics.jsonl") if "accuracy" in r]
    first, last = sum(reward[:25]) / 25, sum(reward[-25:]) / 25
    print(f"{algo} from a {start_acc:.1%} student: held-out {curve}; training reward {first:.3f} -> {last:.3f}")
    assert curve[0][1] == pytest.approx(start_acc, abs=1e-9)  # step 0 evaluates the checkpoint itself
    assert last - first >= 0.10  # the reward the policy gradient maximises goes up
    assert final_accuracy(curve) - start_acc >= 0.20  # and held-out greedy accuracy with it: the issue's +20 points


def test_opd_closes_half_the_gap_to_the_teacher(tmp_path, sft_add_run, weak_student):
    """Issue #4: strong-to-weak on-policy distillation (configs/slow-opd.yaml: the 138k student samples 64
    completions per step, the 1.06M SFT teacher scores every token, lr 3e-4 after 10 warm-up steps, 300 steps)
    closes at least half of the held-out accuracy gap. run.seed = 0 as in the teacher's run, so both are evaluated
    on the same 256 held-out prompts.

    Measured from the 40.6 % student (step 375) toward the 99.6 % teacher, 1 torch thread, run.seed 0 / 1 / 2 (teacher
    99.6 / 98.8 / 100 % on those seeds' held-out sets): student 36.7 -> 77.2 / 40.6 -> 76.8 / 34.4 -> 71.9 %, i.e.
    64 / 62 / 57 % of the gap closed (peak single evaluations 77.3 / 77.0 / 72.3 %); per-token reverse KL (first vs
    last 20 steps) 0.354 -> 0.224 / 0.362 -> 0.186 / 0.337 -> 0.196 (ratios 0.63 / 0.51 / 0.58). `pytest -m slow`
    (2 threads; that teacher 94.9 %, student 30.1 %): 30.1 -> 70.5 %, 62 % of the gap, reverse KL 0.320 -> 0.222
    (ratio 0.69). The 138k student keeps a residual KL the 1.06M same-size setting did not (0.224 -> 0.091 there),
    hence the 0.8 bound."""
    teacher_acc = accuracy_curve(sft_add_run)[-1][1]
    student, _ = weak_student
    out = tmp_path / "opd"
    train(load_config(ROOT / "configs" / "slow-opd.yaml", [f"model.path={student}", f"distill.teacher={sft_add_run / 'final'}",
                                                           f"run.out_dir={out}", "run.seed=0", *QUIET]))
    curve = accuracy_curve(out)
    kl = [r["opd/reverse_kl"] for r in read_jsonl(out / "metrics.jsonl") if "opd/reverse_kl" in r]
    start, first_kl, last_kl = curve[0][1], sum(kl[:20]) / 20, sum(kl[-20:]) / 20
    closed = (final_accuracy(curve) - start) / (teacher_acc - start)
    print(f"OPD: student {start:.1%} -> {final_accuracy(curve):.1%}, teacher {teacher_acc:.1%} ({closed:.0%} of the gap): "
          f"{curve}; reverse KL {first_kl:.3f} -> {last_kl:.3f}")
    assert start < teacher_acc - 0.3  # the student starts well below its teacher
    assert last_kl <= 0.8 * first_kl  # what OPD minimises falls
    assert closed >= 0.5  # and at least half of the accuracy gap closes
