"""Every configuration refuses a key it does not know, naming it (a typo never falls back to a
default silently), and the FAST settings are files."""

from __future__ import annotations

import importlib
import inspect
import json

import pytest
from pydantic import BaseModel, ValidationError

from dashclip.config import FusionConfig, load_model_config

CONFIG_MODULES = ["dashclip.config", "dashclip.stage1", "dashclip.stage2", "dashclip.training", "dashclip.catalog",
                  "dashclip.llm_labeller", "spark_jobs.lib.config", "ranking.model", "ranking.simulator",
                  "ranking.world", "ranking.pipeline", "features.retriever"]
# data schemas, not configurations: a catalog row may carry columns the stack does not read
NOT_CONFIGS = {"CatalogRow"}


def config_classes() -> list[type[BaseModel]]:
    found = {}
    for name in CONFIG_MODULES:
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if issubclass(cls, BaseModel) and cls.__module__ == name and not cls.__name__.startswith("_") \
                    and cls.__name__ not in NOT_CONFIGS:
                found[cls.__name__] = cls
    return list(found.values())


def test_the_config_list_is_complete():
    names = {c.__name__ for c in config_classes()}
    assert {"DashCLIPConfig", "Stage1Config", "Stage1Weights", "Stage2Config", "LoopConfig", "IngestConfig",
            "InferenceConfig", "CatalogJobConfig", "LGBParams", "RankerConfig", "SimConfig", "WorldConfig",
            "TrainConfig", "RetrieverConfig"} <= names


@pytest.mark.parametrize("cls", config_classes(), ids=lambda c: c.__name__)
def test_a_misspelt_key_is_refused_by_name(cls):
    with pytest.raises(ValidationError) as e:
        cls.model_validate({"epochz": 3})
    extra = [err for err in e.value.errors() if err["type"] == "extra_forbidden"]
    assert [err["loc"] for err in extra] == [("epochz",)]
    assert "epochz" in str(e.value)


def test_ranker_train_config_file_typos_are_refused(tmp_path):
    from ranking.train import load_config

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"sim": {"dayz": 5}}))
    from dashclip.cli import CliError

    for fast in (False, True):  # one line naming the file, the field and its value
        with pytest.raises(CliError, match=r"cfg\.json: sim\.dayz: Extra inputs are not permitted \(value 5\)"):
            load_config(str(cfg), fast=fast)


def test_fast_ranker_setting_is_a_file_a_config_overlays(tmp_path):
    from ranking.train import FAST_CONFIG, load_config

    fast = json.loads(FAST_CONFIG.read_text())
    cfg = load_config(None, fast=True)
    assert cfg.world.n_consumers == fast["world"]["n_consumers"] and cfg.sim.days == fast["sim"]["days"]
    assert cfg.n_boot == fast["n_boot"]
    user = tmp_path / "cfg.json"
    user.write_text(json.dumps({"sim": {"days": 7}, "n_boot": 50}))
    both = load_config(str(user), fast=True)
    assert both.sim.days == 7 and both.n_boot == 50  # the user's keys win
    assert both.sim.requests_per_day == fast["sim"]["requests_per_day"]  # the rest of the section stays FAST
    assert both.world == cfg.world


def test_checkpoints_saved_with_the_removed_fusion_setting_still_load():
    cfg = load_model_config("tiny-random").model_dump()
    cfg["fusion"]["init_from_text"] = True  # what configs saved before its removal carry
    assert FusionConfig.model_validate(cfg["fusion"]) == load_model_config("tiny-random").fusion
    with pytest.raises(ValidationError, match="init_from_txt"):
        FusionConfig.model_validate({"init_from_txt": True})
