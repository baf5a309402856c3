"""Config errors: unknown key paths, wrong types, values outside a Literal, overrides, recipe files."""

from __future__ import annotations

import pytest

from mentor.config import ConfigError, FieldMap, TrainConfig, apply_overrides, from_dict, load_config


def test_defaults_and_nested_values():
    cfg = from_dict(TrainConfig, {"optim": {"lr": 2, "betas": [0.8, 0.9]}, "data": {"fields": {"prompt": "question"}}})
    assert cfg.optim.lr == 2.0 and isinstance(cfg.optim.lr, float)  # an integer is accepted for a float field
    assert cfg.optim.betas == (0.8, 0.9) and cfg.data.fields == FieldMap(prompt="question")
    assert cfg.run.seed == 0 and cfg.algo == "sft"


def test_unknown_key_names_its_path_and_the_allowed_keys():
    with pytest.raises(ConfigError) as e:
        from_dict(TrainConfig, {"optim": {"lrr": 0.1}})
    assert "unknown key optim." in str(e.value) and "'lrr'" in str(e.value) and "'lr'" in str(e.value)
    with pytest.raises(ConfigError, match=r"unknown key 'optimizer'; allowed keys here: \['algo', .*'optim', "):
        from_dict(TrainConfig, {"optimizer": {}})
    with pytest.raises(ConfigError, match=r"unknown key data\.fields\.'question'"):
        from_dict(TrainConfig, {"data": {"fields": {"question": "q"}}})


@pytest.mark.parametrize("data,message", [
    ({"optim": {"lr": "fast"}}, "optim.lr: expected a number, got 'fast'"),
    ({"run": {"steps": 1.5}}, "run.steps: expected an integer, got 1.5"),
    ({"run": {"steps": True}}, "run.steps: expected an integer, got True"),  # bool is not an int here
    ({"run": {"progress": "yes"}}, "run.progress: expected true/false, got 'yes'"),
    ({"optim": {"betas": [0.9]}}, "optim.betas: expected 2 items, got 1"),
    ({"sampling": {"stop": "\n"}}, "sampling.stop: expected a list"),
    ({"model": {"lora": {"r": "big"}}}, "model.lora.r: expected an integer, got 'big'"),
    ({"data": {"task_args": [1]}}, "data.task_args: expected a mapping"),
    ({"run": 3}, "run: expected a mapping for RunConfig, got int 3"),
])
def test_wrong_types_name_the_key_path(data, message):
    with pytest.raises(ConfigError) as e:
        from_dict(TrainConfig, data)
    assert message in str(e.value)


def test_bad_literal_lists_the_allowed_values():
    with pytest.raises(ConfigError, match=r"optim.schedule: 'cosin' is not allowed; choose one of \['constant', 'linear', 'cosine'\]"):
        from_dict(TrainConfig, {"optim": {"schedule": "cosin"}})
    with pytest.raises(ConfigError, match=r"model.dtype: 'fp8' is not allowed; choose one of \['float32', 'bfloat16', 'float16'\]"):
        from_dict(TrainConfig, {"model": {"dtype": "fp8"}})


def test_overrides_are_parsed_as_yaml():
    data = apply_overrides({"optim": {"lr": 1.0}}, [
        "optim.lr=0.0003", "run.threads=null", "data.task_args={digits: 4}", "sampling.stop=[a, '=']",
        "run.progress=false", "data.task=mul", "data.prompt_template=Q {prompt}=",
    ])
    assert data == {"optim": {"lr": 0.0003}, "run": {"threads": None, "progress": False},
                    "data": {"task_args": {"digits": 4}, "task": "mul", "prompt_template": "Q {prompt}="},
                    "sampling": {"stop": ["a", "="]}}
    cfg = load_config(None, ["optim.lr=0.0003", "data.task_args={digits: 4}", "eval.k=8"])
    assert cfg.optim.lr == 0.0003 and cfg.data.task_args == {"digits": 4} and cfg.eval.k == 8


def test_override_errors():
    with pytest.raises(ConfigError, match=r"override 'optim.lr': expected key.path=value"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(ConfigError, match=r"override run.seed.x: 'seed' is not a section"):
        apply_overrides({"run": {"seed": 1}}, ["run.seed.x=1"])
    with pytest.raises(ConfigError, match=r"override sampling.stop: cannot parse value"):
        apply_overrides({}, ["sampling.stop=[a, b"])
    with pytest.raises(ConfigError, match=r"unknown key optim\.'lrr'"):
        load_config(None, ["optim.lrr=1"])


def test_recipe_file_errors(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("algo: grpo\noptim:\n  lr: 0.001\n  schedule: linear\n")
    cfg = load_config(recipe, ["optim.schedule=constant"])
    assert (cfg.algo, cfg.optim.lr, cfg.optim.schedule) == ("grpo", 0.001, "constant")  # overrides win over the file
    with pytest.raises(ConfigError, match=rf"recipe {recipe}: optim.schedule: 'step' is not allowed"):
        load_config(recipe, ["optim.schedule=step"])
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    recipe.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(recipe)
    recipe.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(recipe)


def test_bare_off_from_yaml_or_the_command_line_means_the_string():
    # YAML 1.1 reads `off` as False; a Literal field that allows "off" takes it as "off"
    from mentor.config import load_config

    assert load_config(None, ["model.autocast=off"]).model.autocast == "off"
    with pytest.raises(ConfigError, match=r"model.autocast: True is not allowed"):
        load_config(None, ["model.autocast=yes"])
