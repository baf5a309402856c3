"""Dataset rows -> Prompts: the GSM8K-style fixture, malformed JSONL, Parquet and saved datasets, prompt rendering."""

from __future__ import annotations

import json

import pytest

from mentor.config import FieldMap
from mentor.models import build_tokenizer
from mentor.tasks.data import DataError, gsm8k_fixture_path, load_rows, render_prompt
from mentor.types import Prompt
from mentor.verifiers import score

GSM = FieldMap(prompt="question")


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_fixture_loads_in_gsm8k_native_format():
    path = gsm8k_fixture_path()
    prompts = load_rows(str(path), fields=GSM, verifier="math")
    assert len(prompts) == 30 and len({p.id for p in prompts}) == 30
    first = prompts[0]
    assert first.id == "gsm8k_fixture-0" and first.text.startswith("Mia has 12 apples") and first.answer == "24"
    assert first.meta["solution"].endswith("#### 24") and first.meta["line"] == 1 and first.verifier == "math"
    assert first.source == "gsm8k_fixture" and first.row == 0
    by_line = {p.meta["line"]: p for p in prompts}
    assert by_line[12].answer == "1200"  # "#### 1,200": thousands separator removed
    assert by_line[20].answer == "250/3"
    assert by_line[21].answer == "308" and "solution" not in by_line[21].meta  # plain answer, kept as is
    assert by_line[26].answer == "\\frac{9}{20}"  # last \boxed{} of the solution
    assert by_line[27].answer == "600"
    # every row's own solution is accepted by its verifier, and a wrong number is not
    for p in prompts:
        assert score(p.meta.get("solution", p.answer), p) == 1.0, p.id
        assert score("#### 99999", p) == 0.0


def test_gsm8k_solution_as_sft_completion():
    # the same column can be the SFT target (full solution) and, extracted, the answer
    p = load_rows(str(gsm8k_fixture_path()), fields=FieldMap(prompt="question", completion="answer"), limit=1)[0]
    assert p.answer == "24" and p.meta["completion"] == p.meta["solution"]
    assert p.meta["completion"] == "The bags hold 3*4=<<3*4=12>>12 apples.\nMia has 12+12=<<12+12=24>>24 apples.\n#### 24"


def test_limit_and_answer_extract_modes(tmp_path):
    assert [p.answer for p in load_rows(str(gsm8k_fixture_path()), fields=GSM, limit=3)] == ["24", "14", "110"]
    kept = load_rows(str(gsm8k_fixture_path()), fields=GSM, limit=1, answer_extract="none")
    assert kept[0].answer.endswith("#### 24")
    with pytest.raises(DataError, match=r"gsm8k_fixture.jsonl:21, field 'answer': no '#### <answer>'"):
        load_rows(str(gsm8k_fixture_path()), fields=GSM, answer_extract="gsm8k")
    with pytest.raises(DataError, match="answer_extract 'hash'"):
        load_rows(str(gsm8k_fixture_path()), fields=GSM, answer_extract="hash")


def test_bad_json_line_names_file_and_line(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "1+1=", "answer": "2"}, "", '{"prompt": "2+2=", "answer": 4'])
    with pytest.raises(DataError) as e:
        load_rows(str(path))
    assert str(path) in str(e.value) and f"{path}:3:" in str(e.value) and "invalid JSON" in str(e.value)


@pytest.mark.parametrize("row,field_,message", [
    ({"answer": "2"}, "prompt", "missing"),
    ({"prompt": "1+1="}, "answer", "missing"),
    ({"prompt": "1+1=", "answer": True}, "answer", "expected a string or a number"),
    ({"prompt": 5, "answer": "2"}, "prompt", "expected a string or a list of messages"),
    ({"prompt": "1+1=", "answer": "2", "verifier": "fuzzy"}, "verifier", "unknown verifier 'fuzzy'"),
    ({"prompt": "1+1=", "answer": "2", "domain": 3}, "domain", "expected a string"),
    ({"messages": [{"role": "user"}], "answer": "2"}, "messages[0].content", "expected a string"),
    ({"prompt": "1+1=", "answer": "2", "difficulty": "hard"}, "difficulty", "expected an integer"),
])
def test_malformed_row_names_file_line_and_field(tmp_path, row, field_, message):
    path = _write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "ok", "answer": "1"}, row])
    with pytest.raises(DataError) as e:
        load_rows(str(path))
    assert f"{path}:2, field '{field_}'" in str(e.value) and message in str(e.value)


def test_not_an_object_and_duplicate_ids(tmp_path):
    path = _write_jsonl(tmp_path / "list.jsonl", ["[1, 2]"])
    with pytest.raises(DataError, match=r"list.jsonl:1: expected a JSON object, got list"):
        load_rows(str(path))
    path = _write_jsonl(tmp_path / "dup.jsonl", [{"id": 7, "prompt": "a", "answer": "1"}, {"id": "7", "prompt": "b", "answer": "2"}])
    with pytest.raises(DataError, match=r"dup.jsonl:2, field 'id': duplicate id '7' \(first at .*:1\)"):
        load_rows(str(path))


def test_row_fields_and_chat_rows(tmp_path):
    rows = [
        {"id": "a", "prompt": "1+1=", "answer": 2, "verifier": "exact", "source": "mine", "domain": "arith", "difficulty": 1},
        {"messages": [{"role": "user", "content": "What is 1/2 as a decimal?"}], "answer": 0.5},
        {"prompt": [{"role": "user", "content": "hi"}], "answer": 18.0, "completion": "#### 18"},  # TRL conversational
        {"prompt": "write f", "answer": [{"input": "1", "output": "2"}], "verifier": "code"},
    ]
    ps = load_rows(str(_write_jsonl(tmp_path / "r.jsonl", rows)), verifier="math")
    assert (ps[0].id, ps[0].text, ps[0].answer, ps[0].verifier, ps[0].source, ps[0].domain, ps[0].difficulty) == \
        ("a", "1+1=", "2", "exact", "mine", "arith", 1)
    assert ps[1].id == "r-1" and ps[1].text is None and ps[1].messages[0]["content"].startswith("What")
    assert ps[1].answer == "0.5" and ps[1].verifier == "math" and ps[1].source == "r"
    assert ps[2].messages == ({"role": "user", "content": "hi"},) and ps[2].answer == "18"
    assert ps[2].meta["completion"] == "#### 18"
    assert json.loads(ps[3].answer) == [{"input": "1", "output": "2"}] and ps[3].verifier == "code"


def test_file_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_rows(str(tmp_path / "nope.jsonl"))
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"x.csv: unsupported file type '.csv'"):
        load_rows(str(tmp_path / "x.csv"))
    with pytest.raises(DataError, match="unknown verifier 'fuzzy'"):
        load_rows(str(gsm8k_fixture_path()), fields=GSM, verifier="fuzzy")


def test_parquet_round_trip(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": f"What is {i}+{i}?", "answer": f"{i}+{i}={2 * i}\n#### {2 * i}", "domain": "arith"} for i in range(5)]
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    ps = load_rows(str(path), fields=GSM)
    assert [(p.text, p.answer, p.domain, p.id) for p in ps] == \
        [(f"What is {i}+{i}?", str(2 * i), "arith", f"rows-{i}") for i in range(5)]
    assert "line" not in ps[0].meta
    bad = rows[:1] + [{"question": "q", "answer": None, "domain": "arith"}]
    pq.write_table(pa.Table.from_pylist(bad), path)
    with pytest.raises(DataError, match=r"rows.parquet, row 1, field 'answer': missing"):
        load_rows(str(path), fields=GSM)


def test_saved_hf_dataset(tmp_path):
    import datasets

    rows = [{"prompt": f"{i}+1=", "answer": str(i + 1)} for i in range(4)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:2])}) \
        .save_to_disk(str(tmp_path / "ds"))
    assert [p.answer for p in load_rows(str(tmp_path / "ds"), split="test")] == ["1", "2"]
    assert len(load_rows(str(tmp_path / "ds"))) == 4
    with pytest.raises(DataError, match=r"no split 'validation'; available: \['test', 'train'\]"):
        load_rows(str(tmp_path / "ds"), split="validation")


def test_render_prompt():
    tok = build_tokenizer()
    text = Prompt(id="a", text="864+394=")
    assert render_prompt(tok, text) == "864+394="
    # only "{prompt}" is substituted; other braces (LaTeX) stay
    assert render_prompt(tok, text, "Q: {prompt} put it in \\boxed{}") == "Q: 864+394= put it in \\boxed{}"
    chat = Prompt(id="b", messages=({"role": "system", "content": "be brief"}, {"role": "user", "content": "1+1="}))
    # CHAT_TEMPLATE: "<|role|>content" per message (the "\n" after each is currently eaten by the chat renderer's
    # trim_blocks: reported to the owner of models.py), then "<|assistant|>" for the generation prompt
    rendered = render_prompt(tok, chat)
    assert rendered == tok.apply_chat_template(list(chat.messages), tokenize=False, add_generation_prompt=True)
    assert rendered.replace("\n", "") == "<|system|>be brief<|user|>1+1=<|assistant|>"
    with pytest.raises(ValueError, match="no '\\{prompt\\}' placeholder"):
        render_prompt(tok, text, "Q:")
