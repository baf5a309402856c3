"""Procedural verifiable tasks and dataset loading.

Interface (filled in by `tasks/procedural.py` and `tasks/data.py`):

- `TASKS`: the dispatch table, name -> task class. A task instance (built with its difficulty knobs, e.g.
  `TASKS["add"](digits=3)`) has `name`, `domain`, and
    * `generate(rng: random.Random) -> Problem` with `prompt` (text fed to the model, e.g. "864+394="),
      `answer` (short string, e.g. "1258") and `trace` (the SFT completion: scratchpad + ":" + answer,
      e.g. "4+4+0=08,6+9+0=15,8+3+1=12:1258"; EOS is appended by the trainer, not here);
    * `extract(completion: str) -> str | None` (the final answer: text after the last ":")
    * `verify(completion: str, answer: str) -> bool`.
- `make_prompts(task, n, seed, split) -> list[Prompt]`: reproducible, train and eval splits disjoint;
  each Prompt has answer, verifier="task", domain, difficulty, meta={"trace": ..., "task": name, "task_args": {...}}.
- `load_rows(path, split, fields, verifier) -> list[Prompt]`: JSONL / Parquet / HF dataset rows.
"""
