"""The lift report's figures: one summary figure plus one per panel, each titled with the model
version and the run id, every axis labelled and every bar's value written on it."""

from __future__ import annotations

import json

import pytest

from ranking import report as REPORT


def est(v: float, half: float = 0.002) -> dict:
    return {"value": v, "ci95": [v - half, v + half]}


def fake_report() -> dict:
    pol = {p: {"ips_ctr": est(c), "snips_ctr": est(c), "snips_cvr": est(c / 10), "effective_share": est(0.4),
               "logged_ctr": est(0.05)} for p, c in (("with_embeddings", 0.061), ("baseline", 0.052), ("legacy", 0.047))}
    arms = {a: {"ctr": est(c), "cvr": est(c / 10), "conversions_per_impression": est(c / 100)}
            for a, c in (("with_embeddings", 0.06), ("baseline", 0.05))}
    return {
        "model_version": "dashclip-stage2-0123456789", "checkpoint": "runs/pipeline/stage2",
        "auc": {"ctr": {"with_embeddings": 0.71, "baseline": 0.66}, "cvr": {"with_embeddings": 0.69, "baseline": 0.64}},
        "logloss": {"ctr": {"with_embeddings": 0.2, "baseline": 0.21}, "cvr": {"with_embeddings": 0.05, "baseline": 0.06}},
        "off_policy": pol,
        "ab": {"n_requests": 2000, "treatment": "with_embeddings", "control": "baseline", "arms": arms,
               "ctr_lift": 0.12, "ctr_lift_ci95": [0.05, 0.19], "cvr_lift": -0.03, "cvr_lift_ci95": [-0.1, 0.04],
               "conversion_rate_lift": 0.08, "conversion_rate_lift_ci95": [0.0, 0.16]},
        "log": {"requests": 100, "impressions": 500, "clicks": 30, "conversions": 3},
        "split_days": {"train": 10, "val": 2, "test": 2},
    }


def test_every_figure_is_titled_labelled_and_shows_its_values(tmp_path, monkeypatch):
    seen = {}
    real_save = REPORT.save

    def record(fig, path):
        seen[path.name] = {
            "title": fig._suptitle.get_text() if fig._suptitle else "",
            "axes": [(ax.get_xlabel(), ax.get_ylabel(), [t.get_text() for t in ax.texts]) for ax in fig.axes],
        }
        return real_save(fig, path)

    monkeypatch.setattr(REPORT, "save", record)
    report = fake_report()
    paths = REPORT.write(report, tmp_path)

    run_id = json.loads((tmp_path / "report.json").read_text())["run_id"]
    assert run_id == report["run_id"] and len(run_id) == len("20260301T120000Z")
    assert set(seen) == {"summary.png", "auc.png", "off_policy.png", "ab.png"}
    for name, fig in seen.items():
        assert paths[name[:-4]].stat().st_size > 1000
        assert report["model_version"] in fig["title"] and run_id in fig["title"], name
        for xlabel, ylabel, values in fig["axes"]:
            assert xlabel and ylabel and values, (name, xlabel, ylabel)
    summary = seen["summary.png"]["axes"]
    assert len(summary) == 4
    assert "0.710" in summary[0][2] and "0.0610" in summary[1][2] and "+12.0%" in summary[3][2] and "-3.0%" in summary[3][2]
    off_policy = seen["off_policy.png"]["axes"]
    assert [a[1] for a in off_policy] == ["CTR per impression (95% CI)", "CVR per impression (95% CI)"]
    assert "summary.png" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("given", [None, "20990101T000000Z"])
def test_run_id_is_kept_when_the_report_has_one(tmp_path, given):
    report = fake_report()
    if given:
        report["run_id"] = given
    REPORT.write(report, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())["run_id"]
    assert saved == (given or report["run_id"])


def test_training_curve_names_model_and_run(tmp_path, monkeypatch):
    from dashclip import plots
    from dashclip.stage1 import plot_history

    seen = {}
    real_save = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, path: seen.update(
        title=fig._suptitle.get_text(), labels=[(a.get_xlabel(), a.get_ylabel()) for a in fig.axes],
        values=[t.get_text() for a in fig.axes for t in a.texts]) or real_save(fig, path))
    hist = [{"epoch": e, "train_total": 2.0 / e, "val_total": 2.2 / e, "val_text_to_imageonly_R@10": 0.1 * e,
             "val_text_to_product_R@1": 0.05 * e} for e in (1, 2, 3)]
    plot_history(hist, tmp_path / "curve.png", "dashclip-stage1-abc", "20260301T120000Z")
    assert (tmp_path / "curve.png").stat().st_size > 1000
    assert "dashclip-stage1-abc" in seen["title"] and "20260301T120000Z" in seen["title"]
    assert seen["labels"] == [("epoch", "loss"), ("epoch", "recall")]
    assert "0.733" in seen["values"] and "0.300" in seen["values"]  # the last epoch's values
