"""The lift report: `report.json`, `report.md` and PNG plots, every simulated figure labelled."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SIM = "SIMULATED"


def _f(x: float, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:+.1f}%" if pct else f"{x:.4f}"


def _ci(ci: list[float], pct: bool = False) -> str:
    return f"[{_f(ci[0], pct)}, {_f(ci[1], pct)}]"


def markdown(r: dict) -> str:
    auc, ll, ope, ab = r["auc"], r["logloss"], r["off_policy"], r["ab"]
    lines = [
        f"# Ads ranker lift report ({SIM} traffic)",
        "",
        f"All clicks, conversions and rates below come from the traffic simulator (`ranking/simulator.py`), "
        f"not from real users. Embeddings: `{r['model_version']}` from `{r['checkpoint']}`.",
        f"Logged period: {r['log']['requests']:,} requests, {r['log']['impressions']:,} impressions, "
        f"{r['log']['clicks']:,} clicks, {r['log']['conversions']:,} conversions (simulated). "
        f"Days: train {r['split_days']['train']}, validation {r['split_days']['val']}, test {r['split_days']['test']}.",
        "",
        "## Test period, offline metrics (simulated labels)",
        "",
        "| model | pCTR AUC | pCTR logloss | pCVR AUC | pCVR logloss |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in ("with_embeddings", "baseline"):
        lines.append(f"| {name} | {_f(auc['ctr'][name])} | {_f(ll['ctr'][name])} | {_f(auc['cvr'][name])} | {_f(ll['cvr'][name])} |")
    lines.append(f"| **difference** | **{auc['ctr']['with_embeddings'] - auc['ctr']['baseline']:+.4f}** | | "
                 f"**{auc['cvr']['with_embeddings'] - auc['cvr']['baseline']:+.4f}** | |")
    lines += ["", "## Off-policy estimates on the test period (simulated logs, logged propensities)", "",
              "| policy | CTR IPS [95% CI] | CTR SNIPS [95% CI] | CVR (IPS = SNIPS) [95% CI] | logged slots matched |",
              "| --- | --- | --- | --- | --- |"]
    for name in ("with_embeddings", "baseline", "legacy"):
        e = ope[name]
        lines.append(f"| {name} | {_f(e['ips_ctr']['value'])} {_ci(e['ips_ctr']['ci95'])} | "
                     f"{_f(e['snips_ctr']['value'])} {_ci(e['snips_ctr']['ci95'])} | "
                     f"{_f(e['snips_cvr']['value'])} {_ci(e['snips_cvr']['ci95'])} | {e['effective_share']['value']:.3f} |")
    lines.append(f"\nLogged (on-policy) CTR of the logging policy: {_f(ope['baseline']['logged_ctr']['value'])}.")
    lines += ["", f"## Simulated online A/B ({ab['n_requests']:,} fresh simulated requests, paired arms)", "",
              "| arm | CTR [95% CI] | CVR [95% CI] | conversions / impression |", "| --- | --- | --- | --- |"]
    for name, a in ab["arms"].items():
        lines.append(f"| {name} | {_f(a['ctr']['value'])} {_ci(a['ctr']['ci95'])} | {_f(a['cvr']['value'])} "
                     f"{_ci(a['cvr']['ci95'])} | {_f(a['conversions_per_impression']['value'])} |")
    lines += ["", f"Lift of `{ab['treatment']}` over `{ab['control']}` (simulated):", "",
              f"- CTR lift: **{_f(ab['ctr_lift'], True)}**, 95% CI {_ci(ab['ctr_lift_ci95'], True)}",
              f"- CVR lift: **{_f(ab['cvr_lift'], True)}**, 95% CI {_ci(ab['cvr_lift_ci95'], True)}",
              f"- conversions per impression: {_f(ab['conversion_rate_lift'], True)}, 95% CI {_ci(ab['conversion_rate_lift_ci95'], True)}",
              "", "Plots: `auc.png`, `off_policy.png`, `ab.png`.", ""]
    return "\n".join(lines)


def plots(r: dict, out: Path) -> list[Path]:
    paths = []
    names = ["with_embeddings", "baseline"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, task in enumerate(("ctr", "cvr")):
        vals = [r["auc"][task][n] for n in names]
        ax.bar([i - 0.18, i + 0.18], vals, width=0.36, color=["tab:blue", "tab:gray"])
        for x, v in zip([i - 0.18, i + 0.18], vals):
            ax.text(x, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks([0, 1], ["pCTR", "pCVR"])
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("test AUC")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in ("tab:blue", "tab:gray")], labels=names, fontsize=8)
    ax.set_title(f"Test-period AUC ({SIM} clicks)")
    paths.append(_save(fig, out / "auc.png"))

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    pols = ["with_embeddings", "baseline", "legacy"]
    for ax, (metric, title) in zip(axes, (("snips_ctr", "CTR (SNIPS)"), ("snips_cvr", "CVR"))):
        e = [r["off_policy"][p][metric] for p in pols]
        v = [x["value"] for x in e]
        err = [[x["value"] - x["ci95"][0] for x in e], [x["ci95"][1] - x["value"] for x in e]]
        ax.bar(pols, v, yerr=err, capsize=4, color=["tab:blue", "tab:gray", "tab:olive"])
        ax.set_title(f"{title}, off-policy ({SIM})", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    paths.append(_save(fig, out / "off_policy.png"))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ab = r["ab"]
    lifts = [ab["ctr_lift"], ab["cvr_lift"]]
    err = [[lifts[0] - ab["ctr_lift_ci95"][0], lifts[1] - ab["cvr_lift_ci95"][0]],
           [ab["ctr_lift_ci95"][1] - lifts[0], ab["cvr_lift_ci95"][1] - lifts[1]]]
    ax.bar(["CTR lift", "CVR lift"], [100 * x for x in lifts], yerr=[[100 * x for x in e] for e in err], capsize=5,
           color="tab:blue")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("% vs baseline (95% CI)")
    ax.set_title(f"{SIM} A/B: embeddings vs baseline")
    paths.append(_save(fig, out / "ab.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(report: dict, out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out / "report.md").write_text(markdown(report))
    pngs = plots(report, out)
    return {"json": out / "report.json", "markdown": out / "report.md", **{p.stem: p for p in pngs}}
