"""Off-policy estimates of a ranking policy's CTR and CVR from logged propensities (IPS, SNIPS).

The click model is position-based (a slot's click depends on what is in that slot), so the
slot-level estimators are unbiased: for every logged impression (request r, slot k, product i)
with logged propensity p = P_log(i in slot k | r), the weight is w = 1[the target policy puts i
in slot k of r] / p. With n requests and K slots,

    IPS   CTR = sum(w · click) / (n · K)          SNIPS CTR = sum(w · click) / sum(w)

and conversions likewise; CVR (conversions per click) is the ratio of the two conversion and
click estimates (self-normalised by construction). Confidence intervals: Poisson bootstrap over
requests (requests are the independent units), percentile 95%.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ranking import columns as R


def per_request_sums(impressions: pd.DataFrame, target_slot: np.ndarray) -> pd.DataFrame:
    """Per request: sums of w, w·click, w·conversion, and the logged clicks/conversions.

    impressions: request_id, slot, propensity, clicked, converted (one row per logged slot);
    target_slot: (rows,) the slot the target policy gives that row's product in that request
    (-1 when it does not show it).
    """
    match = target_slot == impressions[R.SLOT].to_numpy()
    w = np.where(match, 1.0 / impressions[R.PROPENSITY].to_numpy(), 0.0)
    click = impressions[R.CLICKED].to_numpy(dtype=float)
    conv = impressions[R.CONVERTED].to_numpy(dtype=float)
    df = pd.DataFrame({R.REQUEST_ID: impressions[R.REQUEST_ID].to_numpy(), "w": w, "wc": w * click,
                       "wv": w * conv, "slots": 1.0, "clicks": click, "convs": conv})
    return df.groupby(R.REQUEST_ID, sort=False).sum()


def _estimates(s: np.ndarray) -> dict[str, np.ndarray]:
    """s: (..., 6) summed columns w, wc, wv, slots, clicks, convs -> estimates (...)."""
    w, wc, wv, slots, clicks, convs = (s[..., i] for i in range(6))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"ips_ctr": wc / slots, "snips_ctr": wc / w, "ips_cvr": wv / wc, "snips_cvr": wv / wc,
                "ips_conv_rate": wv / slots, "snips_conv_rate": wv / w,
                "logged_ctr": clicks / slots, "logged_cvr": convs / clicks, "effective_share": w / slots}


def evaluate(sums: pd.DataFrame, n_boot: int = 500, seed: int = 0) -> dict[str, dict]:
    """Point estimates and bootstrap 95% intervals of every estimator in `_estimates`."""
    cols = ["w", "wc", "wv", "slots", "clicks", "convs"]
    x = sums[cols].to_numpy()  # (n_requests, 6)
    point = _estimates(x.sum(axis=0))
    rng = np.random.default_rng(seed)
    counts = rng.poisson(1.0, size=(n_boot, len(x)))  # (B, n) bootstrap multiplicities
    boot = _estimates(counts @ x)  # (B,) each
    out = {}
    for k, v in point.items():
        lo, hi = np.nanpercentile(boot[k], [2.5, 97.5])
        out[k] = {"value": float(v), "ci95": [float(lo), float(hi)]}
    out["n_requests"] = int(len(x))
    out["matched_impressions"] = int((sums["w"] > 0).sum())
    return out
