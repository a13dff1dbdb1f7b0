"""The issue-20 targets over every retrain with the default settings, and their spread.

    python bench/handwritten_retrains.py --name NAME --eval-dir DIR [--seed N] [--note TEXT]

DIR is an evaluation folder as `scripts/run_pipeline.sh` lays it out (`handwritten/queries.json`
from `dashclip.evaluate queries --read-judgments`, `generated/queries.json`,
`products/products.json`). The retrain's figures are added to (or replace, by NAME)
`bench/results/handwritten_retrains.json`, which keeps every retrain so far, and the spread and
the targets are recomputed over all of them:

- handwritten queries, independent judge: served nDCG@10 at least MiniLM zero-shot + 0.05, and no
  intent class below MiniLM;
- relevance AUC above BM25 and MiniLM under the independent judge and the read judgments;
- image-only category probe at least 5 points over the off-the-shelf image features.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_model  # noqa: E402

LEDGER = Path(__file__).resolve().parent / "results" / "handwritten_retrains.json"
JUDGES = ("independent_judge", "read_judge", "annotator")
SYSTEMS = ("dashclip", "minilm_zero_shot", "bm25")


def retrain_figures(hw: dict, gen: dict | None, image_only: float, off_the_shelf: float) -> dict:
    """One retrain's figures: its handwritten and generated query reports (``dashclip.evaluate
    queries``), and its image-only and off-the-shelf image probe accuracies (0-1)."""
    out = {"model_version": hw["model_version"], "handwritten": {}, "generated": {}}
    for judge in JUDGES:
        r = hw[judge]
        out["handwritten"][judge] = {s: {"ndcg@10": round(r[s]["ndcg@10"], 4), "auc_relevant": round(r[s]["auc_relevant"], 4)}
                                     for s in SYSTEMS}
        if "by_intent" in r:  # an evaluate-queries report: per class, each system's metrics
            per_class = {i: {s: v[s]["ndcg@10"] for s in SYSTEMS} for i, v in r["by_intent"].items()}
        else:  # the condensed per-class nDCG@10 of handwritten_three_judges.json
            per_class = r["by_intent_ndcg@10"]
        out["handwritten"][judge]["by_intent_ndcg@10"] = {
            i: {s: round(v[s], 4) for s in SYSTEMS} for i, v in per_class.items()}
    for judge in ("independent_judge", "annotator") if gen else ():
        out["generated"][judge] = {s: round(gen[judge][s]["ndcg@10"], 4) for s in SYSTEMS}
    out["image_only_probe"], out["off_the_shelf_image_probe"] = round(image_only, 4), round(off_the_shelf, 4)
    return out


def from_eval_dir(eval_dir: Path) -> dict:
    """A retrain's figures from its evaluation folder (the pipeline's step-4 layout)."""
    def read(*parts: str) -> dict:
        return json.loads(eval_dir.joinpath(*parts).read_text())

    prod = read("products", "products.json")
    return retrain_figures(read("handwritten", "queries.json"), read("generated", "queries.json"),
                           prod["dashclip"]["probe_acc_image_only"], prod["baseline_image"]["probe_acc"])


def targets(r: dict) -> dict:
    """Whether one retrain meets each target, with the margin it has."""
    ind = r["handwritten"]["independent_judge"]
    lead = ind["dashclip"]["ndcg@10"] - ind["minilm_zero_shot"]["ndcg@10"]
    classes = {i: round(v["dashclip"] - v["minilm_zero_shot"], 4) for i, v in ind["by_intent_ndcg@10"].items()}
    auc_ok = all(r["handwritten"][j]["dashclip"]["auc_relevant"]
                 > max(r["handwritten"][j][b]["auc_relevant"] for b in ("bm25", "minilm_zero_shot"))
                 for j in ("independent_judge", "read_judge"))
    probe = 100 * (r["image_only_probe"] - r["off_the_shelf_image_probe"])
    return {"lead_over_minilm": round(lead, 4), "lead_met": lead >= 0.05,
            "class_margins": classes, "no_class_below_minilm": min(classes.values()) >= 0,
            "auc_above_both_baselines": auc_ok,
            "image_probe_points": round(probe, 2), "image_probe_met": probe >= 5.0}


def spread(retrains: dict[str, dict]) -> dict:
    """min / mean / max over the retrains of the figures the targets read, and how many meet each."""
    def stats(xs: list[float]) -> dict:
        return {"min": round(min(xs), 4), "mean": round(sum(xs) / len(xs), 4), "max": round(max(xs), 4)}

    rs = list(retrains.values())
    ts = [r["targets"] for r in rs]
    return {"retrains": len(rs),
            "handwritten_ndcg@10_independent": stats([r["handwritten"]["independent_judge"]["dashclip"]["ndcg@10"] for r in rs]),
            "lead_over_minilm": stats([t["lead_over_minilm"] for t in ts]),
            "image_probe_points": stats([t["image_probe_points"] for t in ts]),
            "met": {k: sum(bool(t[k]) for t in ts) for k in
                    ("lead_met", "no_class_below_minilm", "auc_above_both_baselines", "image_probe_met")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="the retrain's name in the ledger (replaces one of the same name)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--eval-dir", type=Path, help="the retrain's evaluation folder")
    src.add_argument("--record", nargs=2, metavar=("FILE", "VARIANT"),
                     help="a retrain recorded earlier: a results file with per-variant query reports "
                          "(bench/results/handwritten_three_judges.json) and the variant's name; with --probe")
    ap.add_argument("--probe", nargs=2, type=float, metavar=("IMAGE_ONLY", "OFF_THE_SHELF"),
                    help="with --record: the retrain's image-only and off-the-shelf probe accuracies (0-1)")
    ap.add_argument("--variant", nargs=2, action="append", default=[], metavar=("NAME", "DIR"),
                    help="another checkpoint of the same retrain (e.g. another WiSE-FT choice): its evaluation "
                         "folder (handwritten/, generated/), kept beside the retrain without a target check")
    ap.add_argument("--seed", type=int, default=0, help="the stage-1 and stage-2 seed of the retrain")
    ap.add_argument("--note", default="", help="how it was trained (commands, settings)")
    args = ap.parse_args(argv)
    try:
        if args.eval_dir:
            r = from_eval_dir(args.eval_dir)
            r.update(cpu=cpu_model(), date=datetime.now(timezone.utc).date().isoformat(), source=str(args.eval_dir))
        else:
            if not args.probe:
                ap.error("--record needs --probe IMAGE_ONLY OFF_THE_SHELF")
            record = json.loads(Path(args.record[0]).read_text())
            r = retrain_figures(record["variants"][args.record[1]], None, *args.probe)
            r.update(cpu=record.get("cpu", ""), date=record.get("date", ""), source=" :: ".join(args.record))
    except (FileNotFoundError, KeyError) as e:
        print(f"error: {args.eval_dir or args.record[0]}: {e!r} missing", file=sys.stderr)
        return 2
    r.update(seed=args.seed, note=args.note)
    variants = {}
    for name, d in args.variant:
        d = Path(d)
        v = retrain_figures(json.loads((d / "handwritten" / "queries.json").read_text()),
                            json.loads((d / "generated" / "queries.json").read_text()), r["image_only_probe"],
                            r["off_the_shelf_image_probe"])
        variants[name] = {k: v[k] for k in ("model_version", "handwritten", "generated")}
    if variants:
        r["variants"] = variants
    r["targets"] = targets(r)
    ledger = json.loads(LEDGER.read_text()) if LEDGER.is_file() else {"retrains": {}}
    ledger["what"] = ("issue-20 targets per retrain with the default settings (handwritten queries over the 991 test "
                      "products; image-only probe on the test split) and their spread: bench/handwritten_retrains.py")
    ledger["retrains"][args.name] = r
    ledger["spread"] = spread(ledger["retrains"])
    LEDGER.parent.mkdir(parents=True, exist_ok=True)
    LEDGER.write_text(json.dumps(ledger, indent=2) + "\n")
    print(json.dumps({"added": args.name, "targets": r["targets"], "spread": ledger["spread"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
