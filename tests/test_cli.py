"""The command lines: every --help answers (with defaults), one vocabulary, one-line errors with
exit status 2 (a traceback only with --debug), old flag spellings still accepted, the `dashclip`
console script, and ingest reject reasons without Python object reprs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dashclip.cli import dashclip_main, one_line, rename
REPO = Path(__file__).resolve().parents[1]


def small_catalog(root: Path, n: int) -> Path:
    """A text-only catalog of n products."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "catalog.csv"
    pd.DataFrame({"product_id": [f"p{i}" for i in range(n)], "title": [f"red shirt {i}" for i in range(n)],
                  "category": "Cat > shirt"}).to_csv(path, index=False)
    return path

# every entry point, as users type it (after `python`)
ENTRY_POINTS = {
    "dashclip.catalog ingest": ["-m", "dashclip.catalog", "ingest"],
    "dashclip.train stage1": ["-m", "dashclip.train", "stage1"],
    "dashclip.train stage2": ["-m", "dashclip.train", "stage2"],
    "dashclip.embed products": ["-m", "dashclip.embed", "products"],
    "dashclip.embed queries": ["-m", "dashclip.embed", "queries"],
    "dashclip.evaluate products": ["-m", "dashclip.evaluate", "products"],
    "dashclip.evaluate queries": ["-m", "dashclip.evaluate", "queries"],
    "dashclip.evaluate judgments": ["-m", "dashclip.evaluate", "judgments"],
    "dashclip.tiny": ["-m", "dashclip.tiny"],
    "dashclip.resources": ["-m", "dashclip.resources"],
    "dashclip (console script)": ["-m", "dashclip.cli"],
    "ranking.train": ["-m", "ranking.train"],
    "ranking.serve": ["-m", "ranking.serve"],
    "features.store": ["-m", "features.store"],
    "features.repo init": ["-m", "features.repo", "init"],
    "spark_jobs/embed_catalog.py": ["spark_jobs/embed_catalog.py"],
    "spark_jobs/embed_queries.py": ["spark_jobs/embed_queries.py"],
    "spark_jobs/consumer_profiles.py": ["spark_jobs/consumer_profiles.py"],
    "spark_jobs/label_pairs.py": ["spark_jobs/label_pairs.py"],
    "spark_jobs/feature_stats.py": ["spark_jobs/feature_stats.py"],
}
# the heavy libraries no --help may load (a parse before the imports is what keeps --help fast)
HEAVY = ("torch", "pandas", "pyarrow", "fastapi", "feast", "faiss", "pyspark", "lightgbm", "transformers")


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_every_help_answers_with_defaults_and_no_heavy_import(name):
    probe = (
        "import runpy, sys\n"
        "target, sys.argv = sys.argv[1], sys.argv[1:]\n"
        "code = 0\n"
        "try:\n"
        "    if target.endswith('.py'):\n"
        "        runpy.run_path(target, run_name='__main__')\n"
        "    else:\n"
        "        runpy.run_module(target, run_name='__main__', alter_sys=True)\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        "sys.exit(code)\n")
    args = ENTRY_POINTS[name]
    target = args[1:] if args[0] == "-m" else args
    r = _run(["-c", probe, *target, "--help"])
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout
    assert "--debug" in r.stdout or name == "dashclip (console script)"  # each command has its own --debug
    assert "LOADED []" in r.stdout, r.stdout.splitlines()[-1]
    if name not in ("dashclip (console script)", "dashclip.resources", "features.store", "features.repo init"):
        # (those four take no option with a default)
        assert "(default: " in " ".join(r.stdout.split()), r.stdout


def test_one_vocabulary_out_is_a_folder_everywhere():
    from dashclip.cli import embed_main  # noqa: F401  (the parsers are built below, not run)
    from dashclip.evaluate import build_parser as evaluate_parser
    from dashclip.train import build_parser as train_parser
    from ranking.train import build_parser as ranker_parser
    from spark_jobs.lib.cli import catalog_parser, labels_parser, profiles_parser, queries_parser

    parsers = [evaluate_parser(), train_parser(), ranker_parser(), catalog_parser(), queries_parser(), profiles_parser(),
               labels_parser()]
    helps = []
    for ap in parsers:
        subs = [a for a in ap._actions if a.__class__.__name__ == "_SubParsersAction"]
        for p in [ap] + [s for a in subs for s in a.choices.values()]:
            helps += [a.help for a in p._actions if "--out" in a.option_strings]
    assert len(helps) >= 9 and all(h.startswith("output folder") for h in helps), helps


def test_old_spellings_are_rewritten_with_a_warning(capsys):
    assert rename(["--out-dir", "x", "--out-dir=y", "--keep"], {"--out-dir": "--out"}) == ["--out", "x", "--out=y", "--keep"]
    assert "--out-dir is deprecated; use --out" in capsys.readouterr().err
    from dashclip.evaluate import RENAMED, build_parser

    args = build_parser().parse_args(rename(["judgments", "--out-dir", "d"], RENAMED))
    assert args.out == "d"


def test_one_line_names_the_problem_without_reprs():
    assert one_line(FileNotFoundError("catalog not found: /x.csv")) == "catalog not found: /x.csv"
    assert one_line(KeyError("image_path")) == "missing 'image_path'"
    bug = one_line(TypeError("unsupported operand"))
    assert bug.startswith("unsupported operand") and "TypeError" in bug and "--debug" in bug


def test_error_is_one_line_and_exit_2_traceback_only_with_debug(tmp_path):
    missing = tmp_path / "nope.csv"
    r = _run(["-m", "dashclip.catalog", "ingest", "--catalog", str(missing), "--out", str(tmp_path / "o")])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0], r.stderr
    r = _run(["-m", "dashclip.catalog", "ingest", "--debug", "--catalog", str(missing), "--out", str(tmp_path / "o")])
    assert r.returncode != 0 and "Traceback (most recent call last)" in r.stderr


def test_a_bad_config_field_is_one_line_naming_file_field_and_value(tmp_path):
    cfg = tmp_path / "ingest.json"
    cfg.write_text(json.dumps({"max_title_chars": -3}))
    cat = small_catalog(tmp_path / "cat", n=2)
    r = _run(["-m", "dashclip.catalog", "ingest", "--catalog", str(cat), "--out", str(tmp_path / "o"),
              "--config", str(cfg)])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert str(cfg) in lines[0] and "max_title_chars" in lines[0] and "-3" in lines[0]
    cfg.write_text("{not json")
    r = _run(["-m", "dashclip.catalog", "ingest", "--catalog", str(cat), "--out", str(tmp_path / "o"),
              "--config", str(cfg)])
    assert r.returncode == 2 and f"{cfg}: line 1 column 2" in r.stderr


def test_dashclip_console_script_dispatches_to_the_modules(tmp_path, capsys):
    cat = small_catalog(tmp_path / "cat", n=6)
    assert dashclip_main(["ingest", "--catalog", str(cat), "--out", str(tmp_path / "ingest")]) == 0
    assert len(pd.read_parquet(tmp_path / "ingest" / "products.parquet")) == 6
    with pytest.raises(SystemExit) as e:
        dashclip_main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(c in out for c in ("ingest", "train", "embed", "evaluate", "dashclip.catalog"))
    with pytest.raises(SystemExit) as e:
        dashclip_main(["fly"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:  # the subcommand's own parser answers its help
        dashclip_main(["embed", "products", "--help"])
    assert e.value.code == 0 and "--checkpoint" in capsys.readouterr().out


def test_pyproject_declares_the_console_script():
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["dashclip"] == "dashclip.cli:dashclip_main"


def test_ingest_reject_reason_names_no_python_object(tmp_path):
    from dashclip.catalog import IngestConfig, check_image

    (tmp_path / "bad.jpg").write_bytes(b"this is not an image, just text")
    check = check_image("bad.jpg", tmp_path, IngestConfig())
    assert check.status == "bad"
    assert check.error == "not a decodable image: unrecognised image format"
    assert "object at 0x" not in check.error and repr(io.BytesIO()).split(" at ")[0] not in check.error


def test_serve_settings_from_flags_env_and_old_spellings(monkeypatch):
    from ranking import serve
    from ranking.cli import RENAMED, env_name, export, serve_parser, settings

    assert serve.MAX_BODY_BYTES == settings().max_body_bytes
    monkeypatch.setenv("DASHCLIP_SERVE_PORT", "9001")
    monkeypatch.setenv("DASHCLIP_SERVE_RANKER", "/models/r")
    s = settings(["--port", "9002"])
    assert s.port == 9002 and s.ranker == "/models/r"  # a flag wins over the environment
    assert settings().port == 9001
    old = serve_parser().parse_args(rename(["--models", "m", "--repo", "r", "--products", "p"], RENAMED))
    assert (old.ranker, old.feature_repo, old.catalog) == ("m", "r", "p")
    for action in serve_parser()._actions:  # export() writes os.environ: restored after the test
        if action.option_strings:
            monkeypatch.delenv(env_name(action.option_strings[0]), raising=False)
    monkeypatch.setenv("DASHCLIP_SERVE_PORT", "9001")
    export(old)
    again = settings()
    assert (again.ranker, again.feature_repo, again.catalog, again.port) == ("m", "r", "p", 9001)


def test_server_log_drops_the_faiss_loader_lines():
    code = ("import logging; from dashclip.cli import configure_logging; configure_logging('INFO'); "
            "import faiss; logging.getLogger('ranking.serve').info('own line')")
    r = _run(["-c", code])
    assert r.returncode == 0, r.stderr
    assert "own line" in r.stderr and "faiss" not in r.stderr.lower(), r.stderr
    plain = _run(["-c", "import logging; logging.basicConfig(level='INFO'); import faiss"])
    assert "faiss" in plain.stderr.lower()  # what it would print otherwise


def test_spark_job_names_a_missing_local_input_before_spark_starts(tmp_path):
    missing = tmp_path / "nope.csv"
    r = _run(["spark_jobs/embed_catalog.py", "--checkpoint", str(tmp_path), "--catalog", str(missing),
              "--out", str(tmp_path / "table")])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and lines == [f"error: --catalog {missing}: no such file or folder"], r.stderr
    assert not (tmp_path / "table").exists()


def test_spark_analysis_errors_are_user_errors():
    AnalysisException = type("AnalysisException", (Exception,), {})
    assert one_line(AnalysisException("[PATH_NOT_FOUND] Path does not exist: hdfs://x/y.csv")) == \
        "[PATH_NOT_FOUND] Path does not exist: hdfs://x/y.csv"


def test_embed_products_with_every_row_rejected_writes_an_empty_table(tmp_path):
    from dashclip.tiny import make_tiny_checkpoint

    ck = make_tiny_checkpoint(tmp_path / "ck")
    cat = tmp_path / "cat.csv"
    pd.DataFrame({"product_id": ["a", "b"], "title": ["", ""], "image": ["", ""]}).to_csv(cat, index=False)
    r = _run(["-m", "dashclip.embed", "products", "--checkpoint", str(ck), "--catalog", str(cat),
              "--out", str(tmp_path / "emb")])
    assert r.returncode == 0, r.stderr
    table = pd.read_parquet(tmp_path / "emb" / "product_embeddings.parquet")
    rejects = pd.read_parquet(tmp_path / "emb" / "product_embeddings.rejects.parquet")
    assert len(table) == 0 and "embedding" in table.columns and sorted(rejects["product_id"]) == ["a", "b"]


def test_out_is_a_folder_and_a_file_name_still_works_with_a_warning(tmp_path, capsys):
    from dashclip.cli import out_file

    assert out_file(tmp_path / "emb", "query_embeddings.parquet", (".parquet",)) == tmp_path / "emb" / "query_embeddings.parquet"
    assert capsys.readouterr().err == ""
    assert out_file(tmp_path / "q.parquet", "query_embeddings.parquet", (".parquet",)) == tmp_path / "q.parquet"
    assert "--out is a folder" in capsys.readouterr().err
