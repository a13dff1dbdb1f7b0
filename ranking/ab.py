"""Simulated online A/B test: fresh simulated traffic served by each ranking policy. SIMULATED.

The simulator draws new requests (the day after the logged period) with their candidates; each
arm ranks every request's candidates by its own score and shows its top `n_slots`; clicks and
conversions are drawn from the simulator's ground truth. The arms see the same requests with
common random numbers (the same uniform draw decides a click in slot k of request r in every
arm), a paired design: differences between arms come from what they show, not from noise in
traffic. Lift = metric(treatment) / metric(control) - 1; 95% intervals by a paired Poisson
bootstrap over requests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ranking import columns as R
from ranking.simulator import SimConfig, Traffic, outcomes
from ranking.world import World


def top_slots(scores: np.ndarray, k: int) -> np.ndarray:
    """(n, N) scores -> (n, k) candidate columns, best first (ties by column order)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def serve_arm(world: World, cfg: SimConfig, traffic: Traffic, scores: np.ndarray, u_click: np.ndarray,
              u_conv: np.ndarray) -> dict[str, np.ndarray]:
    """Per request: impressions, clicks, conversions of the arm ranking by `scores` (n, N)."""
    n, K = scores.shape[0], cfg.n_slots
    cols = top_slots(scores, K)
    prod = traffic.cand[np.arange(n)[:, None], cols]  # (n, K)
    req = traffic.requests
    o = outcomes(world, cfg, np.repeat(req["_c"].to_numpy(), K), np.repeat(req["_q"].to_numpy(), K), prod.ravel(),
                 np.tile(np.arange(K), n), u_click.ravel(), u_conv.ravel())
    return {"impressions": np.full(n, float(K)), "clicks": o[R.CLICKED].reshape(n, K).sum(1).astype(float),
            "conversions": o[R.CONVERTED].reshape(n, K).sum(1).astype(float),
            "mean_grade": o[R.GRADE].reshape(n, K).mean(1), "mean_affinity": o[R.AFFINITY].reshape(n, K).mean(1)}


def _rates(x: dict[str, np.ndarray], counts: np.ndarray | None = None) -> dict[str, np.ndarray]:
    s = {k: (v.sum() if counts is None else counts @ v) for k, v in x.items()}
    return {"ctr": s["clicks"] / s["impressions"], "cvr": s["conversions"] / s["clicks"],
            "conversions_per_impression": s["conversions"] / s["impressions"]}


def compare(arms: dict[str, dict[str, np.ndarray]], treatment: str, control: str, n_boot: int = 1000,
            seed: int = 0) -> dict:
    """Rates of every arm and the treatment's relative lift over the control, with 95% intervals."""
    n = len(next(iter(arms.values()))["clicks"])
    rng = np.random.default_rng(seed)
    counts = rng.poisson(1.0, size=(n_boot, n)).astype(float)  # paired: same resample for all arms
    point = {a: _rates(x) for a, x in arms.items()}
    boot = {a: _rates(x, counts) for a, x in arms.items()}
    out = {"simulated": True, "n_requests": int(n), "treatment": treatment, "control": control, "arms": {}}
    for a in arms:
        out["arms"][a] = {m: {"value": float(v), "ci95": [float(q) for q in np.nanpercentile(boot[a][m], [2.5, 97.5])]}
                          for m, v in point[a].items()}
        out["arms"][a]["clicks"] = int(arms[a]["clicks"].sum())
        out["arms"][a]["conversions"] = int(arms[a]["conversions"].sum())
    for m, key in (("ctr", "ctr_lift"), ("cvr", "cvr_lift"), ("conversions_per_impression", "conversion_rate_lift")):
        lift = point[treatment][m] / point[control][m] - 1.0
        bl = boot[treatment][m] / boot[control][m] - 1.0
        out[key] = float(lift)
        out[f"{key}_ci95"] = [float(q) for q in np.nanpercentile(bl, [2.5, 97.5])]
    return out


def uniforms(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, k)), rng.random((n, k))


def candidate_scores(frame: pd.DataFrame, scores: np.ndarray, n: int, N: int) -> np.ndarray:
    """Scores of a candidates frame (n·N rows, request-major as `candidates_frame` writes) -> (n, N)."""
    if len(frame) != n * N:
        raise ValueError(f"{len(frame)} candidate rows for {n} requests × {N} candidates")
    return np.asarray(scores, dtype=float).reshape(n, N)
