"""The LightGBM ads ranker: a pCTR and a pCVR model over one stored, ordered feature list.

Saved as `DIR/ctr.txt`, `DIR/cvr.txt` (LightGBM text models), `DIR/features.json` (the ordered
feature list) and `DIR/config.json` (`RankerConfig`). `predict` refuses a feature list that does
not match the stored one, name for name and in order; `predict_frame` selects the stored columns
from a frame and refuses one that lacks any. Ranking score = pCTR × pCVR (expected conversions
per impression).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ranking import columns as R


class FeatureMismatch(ValueError):
    """The features offered to the ranker are not the ones (or not in the order) it was trained on."""


class LGBParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    num_threads: int = 1
    num_boost_round: int = Field(600, ge=1)
    early_stopping_rounds: int = Field(40, ge=1)
    seed: int = 0


class RankerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str  # with_embeddings | baseline
    features: list[str]
    model_version: str | None = None  # DashCLIP embeddings the features came from
    params: LGBParams = LGBParams()
    best_iteration: dict[str, int] = {}
    train_rows: dict[str, int] = {}


def _lgb_params(p: LGBParams) -> dict:
    d = p.model_dump(exclude={"num_boost_round", "early_stopping_rounds"})
    return {"objective": "binary", "metric": "binary_logloss", "verbosity": -1, "deterministic": True, **d}


def fit_binary(X_tr: pd.DataFrame, y_tr: np.ndarray, X_va: pd.DataFrame, y_va: np.ndarray, p: LGBParams) -> lgb.Booster:
    """Binary LightGBM with early stopping on the (later-in-time) validation rows."""
    dtr = lgb.Dataset(X_tr, label=y_tr, free_raw_data=False)
    dva = lgb.Dataset(X_va, label=y_va, reference=dtr)
    return lgb.train(_lgb_params(p), dtr, num_boost_round=p.num_boost_round, valid_sets=[dva],
                     callbacks=[lgb.early_stopping(p.early_stopping_rounds, verbose=False)])


class Ranker:
    def __init__(self, boosters: dict[str, lgb.Booster], config: RankerConfig):
        for task, b in boosters.items():
            if list(b.feature_name()) != list(config.features):
                raise FeatureMismatch(f"{task} model was trained on {b.feature_name()}, config lists {config.features}")
        self.boosters, self.config = boosters, config

    @property
    def features(self) -> list[str]:
        return list(self.config.features)

    def check(self, names: Sequence[str]) -> None:
        names = list(names)
        if names == self.features:
            return
        missing = [f for f in self.features if f not in names]
        extra = [f for f in names if f not in self.features]
        detail = f"missing {missing}" if missing else ""
        detail += (", " if detail and extra else "") + (f"unexpected {extra}" if extra else "")
        raise FeatureMismatch(f"ranker {self.config.name!r} needs features {self.features} in that order; got {names}"
                              + (f" ({detail})" if detail else " (order differs)"))

    def predict(self, X: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """(n, f) feature matrix whose columns are `names` -> {"ctr": (n,), "cvr": (n,), "score": (n,)}."""
        self.check(names)
        X = np.asarray(X, dtype=np.float64)
        out = {t: b.predict(X, num_threads=1) for t, b in self.boosters.items()}
        out["score"] = out["ctr"] * out["cvr"]
        return out

    def predict_frame(self, frame: pd.DataFrame, slot: int | None = 0) -> dict[str, np.ndarray]:
        """Scores for the rows of a frame; `slot` overrides the position feature (None keeps it)."""
        missing = [f for f in self.features if f not in frame]
        if missing and not (missing == [R.SLOT] and slot is not None):
            raise FeatureMismatch(f"frame lacks ranker features {missing}")
        X = frame.reindex(columns=self.features).astype(float)
        if slot is not None:
            X[R.SLOT] = float(slot)
        return self.predict(X.to_numpy(), self.features)

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for task, b in self.boosters.items():
            b.save_model(str(out / f"{task}.txt"))
        (out / "features.json").write_text(json.dumps(self.features, indent=2))
        (out / "config.json").write_text(self.config.model_dump_json(indent=2))
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> "Ranker":
        out = Path(out_dir)
        config = RankerConfig.model_validate_json((out / "config.json").read_text())
        features = json.loads((out / "features.json").read_text())
        if features != config.features:
            raise FeatureMismatch(f"{out}/features.json {features} differs from config.json {config.features}")
        boosters = {t: lgb.Booster(model_file=str(out / f"{t}.txt")) for t in R.TASKS}
        return cls(boosters, config)
