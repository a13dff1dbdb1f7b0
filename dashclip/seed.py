"""The stage-2 seed: the graded pairs the teacher learns from, and the share of them held out.

Either a user's relevance judgments (``query_id, query, product_id, label``; `dashclip.inputs`)
or, without them, the rule annotator grading the mined pairs of a budget of queries (simulated
labels: the annotator plays the human annotators). Held-out queries are chosen by a hash of the
query id, so the same seed, given as a file or made by the annotator, holds out the same queries
and trains the same teacher.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from dashclip import columns as C
from dashclip.inputs import InputError, check_judgments, read_table

SIMULATED = "simulated labels: the rule annotator played the annotators"


def heldout_queries(qids, share: float, salt: int | str = 0) -> set[str]:
    """A fixed ``share`` (at least one) of the query ids, chosen by a salted hash of each id."""
    order = sorted(set(qids), key=lambda q: hashlib.sha1(f"{salt}:{q}".encode()).hexdigest())
    return set(order[: max(1, int(len(order) * share))])


def seed_from_judgments(path: str | Path, train_df: pd.DataFrame, catalog_ids: set[str] | None = None
                        ) -> tuple[pd.DataFrame, dict]:
    """Judged pairs of training products -> (``query_id, query, row, label`` in file order, info).

    Every problem of the file stops the run (`InputError`). Pairs of products outside the
    training split are left out (counted in info): validation and test products stay unseen.
    """
    ids = catalog_ids if catalog_ids is not None else set(train_df[C.PRODUCT_ID].astype(str))
    problems = check_judgments(path, ids)
    if problems:
        raise InputError(problems)
    df = read_table(path)
    row = {p: i for i, p in enumerate(train_df[C.PRODUCT_ID].astype(str))}
    pid = df[C.PRODUCT_ID].astype(str).str.strip()
    keep = pid.isin(row).to_numpy()
    seed = pd.DataFrame({C.QUERY_ID: df[C.QUERY_ID].astype(str).str.strip().to_numpy()[keep],
                         C.QUERY: df[C.QUERY].astype(str).str.strip().to_numpy()[keep],
                         "row": pid[keep].map(row).to_numpy(dtype=np.int64),
                         C.LABEL: pd.to_numeric(df[C.LABEL]).to_numpy(dtype=np.int64)[keep]})
    info = {"seed_source": f"human judgments: {path}", "seed_pairs_given": len(df),
            "seed_pairs_outside_training_products": int((~keep).sum())}
    return seed, info
