"""The lift report: `report.json`, `report.md` and PNG plots, every simulated figure labelled.

`summary.png` is the one figure to look at (offline AUC, off-policy CTR/CVR and the A/B lifts, with
95% intervals and the values written on the bars); `auc.png`, `off_policy.png` and `ab.png` show
each panel larger. Every figure's title names the model version and the run id (`report.json`'s
`run_id`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from dashclip.plots import label_bars, new_run_id, pyplot, save, stamp
from ranking.world import truth_note

SIM = "SIMULATED"
NAMES = ["with_embeddings", "baseline"]
POLICIES = ["with_embeddings", "baseline", "legacy"]
COLORS = {"with_embeddings": "tab:blue", "baseline": "tab:gray", "legacy": "tab:olive"}


def _f(x: float, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:+.1f}%" if pct else f"{x:.4f}"


def _ci(ci: list[float], pct: bool = False) -> str:
    return f"[{_f(ci[0], pct)}, {_f(ci[1], pct)}]"


def markdown(r: dict) -> str:
    auc, ll, ope, ab = r["auc"], r["logloss"], r["off_policy"], r["ab"]
    truth = r.get("truth", "annotator")  # reports from before the setting existed followed the annotator
    lines = [
        f"# Ads ranker lift report ({SIM} traffic)",
        "",
        f"All clicks, conversions and rates below come from the traffic simulator (`ranking/simulator.py`), "
        f"not from real users. Embeddings: `{r['model_version']}` from `{r['checkpoint']}`.",
        f"Relevance behind the simulated clicks (`world.truth`): **{truth}**, {truth_note(truth)}.",
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
              "", "Plots: `summary.png` (all of the above in one figure); `auc.png`, `off_policy.png`, `ab.png`.", ""]
    return "\n".join(lines)


def _auc_panel(ax, r: dict) -> None:
    for i, task in enumerate(("ctr", "cvr")):
        vals = [r["auc"][task][n] for n in NAMES]
        label_bars(ax, ax.bar([i - 0.18, i + 0.18], vals, width=0.36, color=[COLORS[n] for n in NAMES]))
    ax.set_xticks([0, 1], ["pCTR", "pCVR"])
    ax.set_xlabel("model (test period)")
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("AUC")
    ax.legend(handles=[_swatch(COLORS[n]) for n in NAMES], labels=NAMES, fontsize=7, loc="upper right")
    ax.set_title(f"offline AUC ({SIM} clicks)", fontsize=9)


def _off_policy_panel(ax, r: dict, metric: str, name: str) -> None:
    e = [r["off_policy"][p][metric] for p in POLICIES]
    v = [x["value"] for x in e]
    err = [[x["value"] - x["ci95"][0] for x in e], [x["ci95"][1] - x["value"] for x in e]]
    bars = ax.bar(POLICIES, v, yerr=err, capsize=4, color=[COLORS[p] for p in POLICIES])
    label_bars(ax, bars, "{:.4f}", [x["ci95"] for x in e])
    ax.set_xlabel("policy")
    ax.set_ylabel(f"{name} per impression (95% CI)")
    ax.set_title(f"{name}, off-policy SNIPS ({SIM})", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)


def _ab_panel(ax, r: dict) -> None:
    ab = r["ab"]
    lifts = [ab["ctr_lift"], ab["cvr_lift"]]
    err = [[lifts[0] - ab["ctr_lift_ci95"][0], lifts[1] - ab["cvr_lift_ci95"][0]],
           [ab["ctr_lift_ci95"][1] - lifts[0], ab["cvr_lift_ci95"][1] - lifts[1]]]
    bars = ax.bar(["CTR lift", "CVR lift"], [100 * x for x in lifts], yerr=[[100 * x for x in e] for e in err],
                  capsize=5, color="tab:blue")
    label_bars(ax, bars, "{:+.1f}%", [[100 * x for x in ab[f"{m}_lift_ci95"]] for m in ("ctr", "cvr")])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(f"{ab['treatment']} vs {ab['control']}")
    ax.set_ylabel("lift, % (95% CI)")
    ax.set_title(f"A/B, {ab['n_requests']:,} requests ({SIM})", fontsize=9)


def _swatch(color: str):
    return pyplot().Rectangle((0, 0), 1, 1, color=color)


def plots(r: dict, out: Path) -> list[Path]:
    """summary.png plus one PNG per panel, each titled with the model version and the run id."""
    plt = pyplot()
    version, run = r["model_version"], r["run_id"]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    _auc_panel(axes[0], r)
    _off_policy_panel(axes[1], r, "snips_ctr", "CTR")
    _off_policy_panel(axes[2], r, "snips_cvr", "CVR")
    _ab_panel(axes[3], r)
    stamp(fig, f"Ads ranker with DashCLIP embeddings vs without: {SIM} traffic", version, run)
    paths = [save(fig, out / "summary.png")]

    fig, ax = plt.subplots(figsize=(6, 4))
    _auc_panel(ax, r)
    stamp(fig, f"Test-period AUC ({SIM} clicks)", version, run)
    paths.append(save(fig, out / "auc.png"))

    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    _off_policy_panel(axes[0], r, "snips_ctr", "CTR")
    _off_policy_panel(axes[1], r, "snips_cvr", "CVR")
    stamp(fig, f"Off-policy estimates on the test period ({SIM} logs)", version, run)
    paths.append(save(fig, out / "off_policy.png"))

    fig, ax = plt.subplots(figsize=(5, 4))
    _ab_panel(ax, r)
    stamp(fig, f"{SIM} A/B: embeddings vs baseline", version, run)
    paths.append(save(fig, out / "ab.png"))
    return paths


def write(report: dict, out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report.setdefault("run_id", new_run_id())  # the figures' titles and report.json name the same run
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out / "report.md").write_text(markdown(report))
    pngs = plots(report, out)
    return {"json": out / "report.json", "markdown": out / "report.md", **{p.stem: p for p in pngs}}


# --- the lift under each relevance truth (`python -m ranking.train --truth both`) ------------------
def by_truth(reports: dict[str, dict]) -> dict:
    """Truth name -> its run's report, reduced to the figures compared across truths."""
    rows = {}
    for truth, r in reports.items():
        auc, ab = r["auc"]["ctr"], r["ab"]
        rows[truth] = {
            "truth_note": truth_note(truth), "model_version": r["model_version"],
            "pctr_auc": {"with_embeddings": auc["with_embeddings"], "baseline": auc["baseline"],
                         "difference": auc["with_embeddings"] - auc["baseline"]},
            "ab": {k: ab[k] for k in ("treatment", "control", "n_requests", "ctr_lift", "ctr_lift_ci95",
                                      "cvr_lift", "cvr_lift_ci95")},
        }
    return {"simulated": True,
            "note": "one simulate -> rank -> A/B run per relevance truth; same seeds and settings otherwise",
            "truths": rows}


def truth_markdown(c: dict) -> str:
    lines = [f"# Ads ranker lift under each relevance truth ({SIM} traffic)", "",
             "Each row is one run of the whole measurement whose simulated clicks follow that truth's grades "
             "(`OUT/truth=<name>/report.md`). A lift that shrinks under `independent` came partly from "
             "the ranker sharing the stage-2 labeller's rules.", "",
             "| truth | pCTR AUC with embeddings | pCTR AUC baseline | AUC difference | A/B CTR lift [95% CI] "
             "| A/B CVR lift [95% CI] |", "| --- | --- | --- | --- | --- | --- |"]
    for truth, t in c["truths"].items():
        auc, ab = t["pctr_auc"], t["ab"]
        lines.append(f"| {truth} | {_f(auc['with_embeddings'])} | {_f(auc['baseline'])} | {auc['difference']:+.4f} "
                     f"| {_f(ab['ctr_lift'], True)} {_ci(ab['ctr_lift_ci95'], True)} "
                     f"| {_f(ab['cvr_lift'], True)} {_ci(ab['cvr_lift_ci95'], True)} |")
    lines += [""] + [f"- `{truth}`: {t['truth_note']}." for truth, t in c["truths"].items()] + [""]
    return "\n".join(lines)


def write_by_truth(reports: dict[str, dict], out: str | Path) -> dict[str, Path]:
    """`OUT/lift_by_truth.{json,md}` from each truth's report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c = by_truth(reports)
    (out / "lift_by_truth.json").write_text(json.dumps(c, indent=2, default=float) + "\n")
    (out / "lift_by_truth.md").write_text(truth_markdown(c))
    return {"json": out / "lift_by_truth.json", "markdown": out / "lift_by_truth.md"}
