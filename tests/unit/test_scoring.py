import pytest
import torch

from mentor import losses
from mentor.config import ConfigError, DistillConfig, TeacherConfig
from mentor.models import build_tiny_model, build_tokenizer, save_model
from mentor.rl import collate_rollouts
from mentor.scoring import TeacherScorer, check_same_tokenizer
from mentor.types import Prompt, Rollout


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    tok = build_tokenizer()
    root = tmp_path_factory.mktemp("teachers")
    paths = {}
    for i, name in enumerate(["add", "sort", "count"]):
        paths[name] = str(save_model(build_tiny_model(tok, "100k", seed=10 + i), tok, root / name))
    return tok, paths


def test_lambda_not_one_without_reference_fails_before_loading(tmp_path):
    tok = build_tokenizer()
    with pytest.raises(ConfigError, match="never falls back"):
        TeacherScorer(DistillConfig(teacher="/does/not/matter", reward_scale=1.25, reference=None), tok, "student", device="cpu")


def test_tokenizer_mismatch_names_the_token():
    a, b = build_tokenizer(), build_tokenizer()
    b.add_tokens(["<extra>"])
    with pytest.raises(ConfigError, match="'<extra>'"):
        check_same_tokenizer(a, b, "student", "teacher-x")


def test_multi_teacher_routing_equals_single_teacher_runs(teachers):
    tok, paths = teachers
    cfg = DistillConfig(teachers={n: TeacherConfig(model=p) for n, p in paths.items()}, route_field="domain")
    scorer = TeacherScorer(cfg, tok, "student", device="cpu")
    g = torch.Generator().manual_seed(0)
    domains = ["sort", "add", "count", "add", "sort", "count"]
    prompts = [Prompt(id=str(i), text="1+2=", domain=d) for i, d in enumerate(domains)]
    rollouts = [Rollout(str(i), tuple(tok("1+2=")["input_ids"]), tuple(torch.randint(7, 100, (3 + i,), generator=g).tolist()),
                        tuple([0.0] * (3 + i)), "length") for i in range(6)]
    batch = collate_rollouts(rollouts, tok.pad_token_id, "cpu")
    mixed = scorer.score(batch, scorer.route(prompts), micro_batch_size=4)["teacher_logprobs"]
    for name in paths:
        single = TeacherScorer(DistillConfig(teacher=paths[name]), tok, "student", device="cpu")
        rows = [i for i, d in enumerate(domains) if d == name]
        alone = single.score(collate_rollouts([rollouts[i] for i in rows], tok.pad_token_id, "cpu"), ["teacher"] * len(rows), 4)
        T = alone["teacher_logprobs"].shape[1]
        m = batch.loss_mask[rows][:, :T]
        assert torch.allclose(mixed[rows][:, :T] * m, alone["teacher_logprobs"] * m, atol=1e-5)


def test_unknown_route_value_names_prompt_and_value(teachers):
    tok, paths = teachers
    scorer = TeacherScorer(DistillConfig(teachers={"add": TeacherConfig(model=paths["add"]), "sort": TeacherConfig(model=paths["sort"])}),
                           tok, "student", device="cpu")
    with pytest.raises(ValueError, match="prompt 'p7'.*domain='mul'"):
        scorer.route([Prompt(id="p7", text="x", domain="mul", source="f.jsonl", row=7)])


def test_student_equals_teacher_gives_zero_advantage(teachers):
    tok, paths = teachers
    scorer = TeacherScorer(DistillConfig(teacher=paths["add"]), tok, "student", device="cpu")
    model = scorer.teachers["teacher"].model
    r = Rollout("0", tuple(tok("12+3=")["input_ids"]), (20, 21, 22, 1), (0.0,) * 4, "stop")
    batch = collate_rollouts([r], tok.pad_token_id, "cpu")
    s = scorer.score(batch, ["teacher"], 4)
    student_lp = scorer.token_logprobs(model, batch, [0], 4)
    adv = losses.gopd_token_advantages(student_lp, s["teacher_logprobs"], None, 1.0, mask=batch.loss_mask)
    assert torch.count_nonzero(adv) == 0
