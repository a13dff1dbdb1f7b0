"""The command lines of the project: one help style, one error style, one vocabulary, and ``dashclip``.

    dashclip ingest   --catalog PATH --out DIR                       (python -m dashclip.catalog ingest)
    dashclip train    stage1|stage2 --out DIR ...                    (python -m dashclip.train)
    dashclip embed    products|queries --checkpoint DIR --out DIR    (python -m dashclip.embed)
    dashclip evaluate products|queries|judgments ... --out DIR      (python -m dashclip.evaluate)

The same words mean the same thing in every command: ``--catalog`` a catalog file (csv/parquet),
an ingested ``products.parquet`` or its folder; ``--checkpoint`` a DashCLIP checkpoint folder;
``--queries`` a query file (``query_id, query``); ``--judgments`` a judgment file; ``--out`` the
output *folder* (created when missing); ``--config`` a JSON file of settings; ``--device``
``auto | cpu | cuda | cuda:N``; ``--threads`` torch threads.

Every entry point parses its command line before importing anything heavy (so ``--help`` answers
at once) and runs through :func:`run_main`: an error is one line on stderr and exit status 2;
``--debug`` shows the traceback instead. Old flag spellings still work (see ``rename``) and warn.
Only the standard library is imported here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_USAGE = 2
# exceptions that say what the user got wrong: printed as they are; anything else is a bug and
# names its type (and how to see the traceback)
USER_ERRORS = (OSError, ValueError, LookupError)
USER_ERROR_NAMES = ("AnalysisException",)  # Spark's: a missing path or column, said in its message


class CliError(Exception):
    """A one-line user error raised by command-line glue."""


# the placeholder each vocabulary word shows in usage lines: what kind of thing it takes
METAVARS = {"catalog": "PATH", "train_catalog": "PATH", "checkpoint": "DIR", "out": "DIR", "config": "FILE",
            "queries": "FILE", "exclude_queries": "FILE", "judgments": "FILE", "feature_data": "DIR",
            "feature_repo": "DIR", "ranker": "DIR", "image_root": "DIR", "report": "FILE", "purchases": "PATH",
            "embeddings": "DIR", "threads": "N", "epochs": "N", "batch_size": "N", "gpu_batch_size": "N",
            "partitions": "N", "seed": "N", "max_rows": "N", "per_category": "N", "workers": "N", "port": "N",
            "retrieve_k": "K", "max_body_bytes": "BYTES", "device": "DEVICE", "host": "HOST", "model_version": "VERSION",
            "window_days": "DAYS", "as_of": "TIME", "valid_from": "TIME", "master": "URL"}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help (those that say something), placeholders that say what kind of thing an
    option takes (``--out DIR``), the module docstring kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default == [] or action.required:
            return action.help or ""
        return super()._get_help_string(action)

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        return METAVARS.get(action.dest, action.dest.upper())


def parser(prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """An entry point's parser: defaults shown, a ``--debug`` flag."""
    ap = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return ap


def subcommand(sub, name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand parser with the same help style; ``--debug`` is accepted after it too."""
    p = sub.add_parser(name, help=help, description=description or help, formatter_class=HelpFormatter)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    return p


def rename(argv: Sequence[str], old_to_new: dict[str, str]) -> list[str]:
    """Old flag spellings rewritten to the current ones (``--old v`` and ``--old=v``), each with a
    deprecation warning on stderr; the old names never appear in ``--help``."""
    out = []
    for tok in argv:
        name, eq, value = tok.partition("=")
        if name in old_to_new:
            print(f"warning: {name} is deprecated; use {old_to_new[name]}", file=sys.stderr)
            tok = old_to_new[name] + eq + value
        out.append(tok)
    return out


def one_line(e: BaseException) -> str:
    """An exception as one line: its message with the line breaks folded, or its type; a bug (not a
    user error) also names its type and ``--debug``."""
    if _is_validation_error(e):
        return _validation_line(e)
    msg = " ".join(str(e).split()) if str(e).strip() else type(e).__name__
    if isinstance(e, KeyError) and e.args:  # str(KeyError) is the repr of the key
        msg = f"missing {e.args[0]!r}"
    if not isinstance(e, (CliError, *USER_ERRORS)) and type(e).__name__ not in USER_ERROR_NAMES:
        msg = f"{msg} [{type(e).__name__}; rerun with --debug for the traceback]"
    return msg


def _is_validation_error(e: BaseException) -> bool:
    return type(e).__name__ == "ValidationError" and hasattr(e, "errors")


def _validation_line(e, source: str | None = None) -> str:
    """A pydantic ValidationError as ``[source: ]field: message (value ...)`` joined by ``; ``."""
    parts = []
    for err in e.errors():
        field = ".".join(str(x) for x in err.get("loc", ())) or "(top level)"
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (value {_short(repr(value))})"
        parts.append(f"{field}: {err.get('msg')}{shown}")
    head = f"{source}: " if source else ""
    return head + "; ".join(parts)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_main(ap: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int | None],
             argv: Sequence[str] | None = None, renamed: dict[str, str] | None = None) -> int:
    """Parse ``argv`` (old spellings in ``renamed`` rewritten), then ``run(args)``; an error becomes
    one line on stderr and exit status 2 (a traceback with ``--debug``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(rename(argv, renamed or {}))
    debug = getattr(args, "debug", False)
    if not debug:  # library deprecation chatter is not the user's business
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place errors become the one-line form
        if debug:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_USAGE


def load_config(cls, path: str | Path | None, overrides: dict | None = None):
    """A pydantic settings object from a JSON file plus non-None ``overrides``; a bad file or field
    is a CliError naming the file, the field and the value."""
    data = {}
    if path:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise CliError(f"--config {p}: no such file") from None
        except json.JSONDecodeError as e:
            raise CliError(f"{p}: line {e.lineno} column {e.colno}: {e.msg}") from None
        if not isinstance(data, dict):
            raise CliError(f"{p}: expected a JSON object of {cls.__name__} fields, got {type(data).__name__}")
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return cls.model_validate(data)
    except Exception as e:
        if _is_validation_error(e):
            raise CliError(_validation_line(e, str(path) if path else cls.__name__)) from None
        raise


def out_file(out: str | Path, name: str, file_suffixes: tuple[str, ...]) -> Path:
    """The file a command writes in its ``--out`` folder. A path ending in one of
    ``file_suffixes`` is the older form that named the file itself: still honoured."""
    out = Path(out)
    if out.suffix.lower() in file_suffixes:
        print(f"warning: --out {out}: --out is a folder; naming the file is deprecated "
              f"(writes {name} inside the folder)", file=sys.stderr)
        return out
    return out / name


_ADDRESS = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def clean_message(msg: str) -> str:
    """A library error message without Python object reprs (``<_io.BytesIO object at 0x…>``)."""
    return " ".join(_ADDRESS.sub("the data", msg).split())


# third-party loggers that talk at INFO about their own loading (faiss picks its CPU build, feast
# its registry): warnings only, so a service's log shows what it does
NOISY_LOGGERS = ("faiss", "faiss.loader", "feast", "httpx", "httpcore", "urllib3", "filelock", "fsspec",
                 "numexpr", "matplotlib", "PIL", "asyncio", "multipart", "python_multipart", "py4j")


def configure_logging(level: str | int = "INFO", fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> None:
    """The root logger at ``level`` and the noisy third-party loggers at WARNING."""
    import logging

    logging.basicConfig(level=level.upper() if isinstance(level, str) else level, format=fmt)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def lazy(target: str) -> Callable[[argparse.Namespace], int | None]:
    """``"module:function"`` imported only when called: the command's work starts after parsing."""
    module, func = target.split(":")
    return lambda args: getattr(importlib.import_module(module), func)(args)


# The command lines of the two modules whose own imports are heavy (pandas, torch) live here, so
# `--help` answers before those load; the modules' main() and `python -m` come here.

def ingest_main(argv: Sequence[str] | None = None) -> int:
    ap = parser("python -m dashclip.catalog", "Catalog ingestion: validate every row of a catalog, write "
                "the clean products and one row per rejected input row.")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    ing = subcommand(sub, "ingest", "validate a catalog and write OUT/products.parquet and OUT/rejects.parquet")
    ing.add_argument("--catalog", required=True, help="catalog file (csv, tsv or parquet; canonical columns)")
    ing.add_argument("--out", required=True, help="output folder: products.parquet, rejects.parquet, ingest_report.json")
    ing.add_argument("--config", help="JSON file of IngestConfig fields (validation limits, image rules)")
    ing.add_argument("--image-root", help="folder local images must lie in (default: the catalog's folder)")
    return run_main(ap, lazy("dashclip.catalog:run_cli"), argv)


def embed_main(argv: Sequence[str] | None = None) -> int:
    ap = parser("python -m dashclip.embed", "Batch embedding of products and queries with a DashCLIP checkpoint.")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = subcommand(sub, "products", "embed a catalog")
    p.add_argument("--catalog", required=True, help="catalog file (csv, tsv or parquet; canonical columns)")
    q = subcommand(sub, "queries", "embed a query file")
    q.add_argument("--queries", required=True, help="query file (query_id, query; csv or parquet)")
    for s in (p, q):
        s.add_argument("--checkpoint", required=True, help="DashCLIP checkpoint folder")
        name = "product_embeddings" if s is p else "query_embeddings"
        s.add_argument("--out", required=True, help=f"output folder: {name}.parquet and {name}.rejects.parquet")
        s.add_argument("--batch-size", type=int, default=64, help="rows per forward pass")
        s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
        s.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    return run_main(ap, lazy("dashclip.embed:run_cli"), argv)


# the `dashclip` console script: subcommand -> (its main, argv prefix, help, the python -m form)
COMMANDS = {
    "ingest": ("dashclip.cli:ingest_main", ["ingest"], "validate a catalog; write products and rejects parquet",
               "python -m dashclip.catalog ingest"),
    "train": ("dashclip.train:main", [], "train a checkpoint: stage1 (product encoder), stage2 (query encoder)",
              "python -m dashclip.train"),
    "embed": ("dashclip.cli:embed_main", [], "embed products or queries with a checkpoint", "python -m dashclip.embed"),
    "evaluate": ("dashclip.evaluate:main", [], "evaluate a checkpoint (products, queries); build judgments",
                 "python -m dashclip.evaluate"),
}


def dashclip_main(argv: Sequence[str] | None = None) -> int:
    """``dashclip COMMAND ...``: the command's own command line with the rest of argv."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        ap = argparse.ArgumentParser(prog="dashclip", description="DashCLIP: ingest a catalog, train, embed, "
                                     "evaluate. Each command is also `python -m <module>`.",
                                     formatter_class=HelpFormatter)
        sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
        for name, (_, _, help, long_form) in COMMANDS.items():
            sub.add_parser(name, help=f"{help}  [{long_form}]", add_help=False)
        ap.parse_args(argv[:1])  # prints the help, or the usage error for an unknown command
        return EXIT_USAGE
    target, prefix, _, _ = COMMANDS[argv[0]]
    module, func = target.split(":")
    main = getattr(importlib.import_module(module), func)
    return main(prefix + argv[1:])


if __name__ == "__main__":  # python -m dashclip.cli, the same as the `dashclip` command
    raise SystemExit(dashclip_main())
