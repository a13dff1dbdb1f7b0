"""A working Feast repo folder from the template shipped inside the package.

    python -m features.repo init DIR [--force]

Copies `feature_store.yaml`, `feature_store.spark.yaml` and `repo.py` (the declarations, built by
`features.definitions`) from the packaged template (`features/repo_template`, a link to the
checkout's `feature_repo/`) into DIR; run `feast apply` there. A file already in DIR that differs
from the template is left alone unless --force, so local edits survive.
Feast writes its registry under `DIR/data/`; the offline tables default to the same folder
(`$DASHCLIP_FEATURE_DATA` overrides it).
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

TEMPLATE_FILES = ("feature_store.yaml", "feature_store.spark.yaml", "repo.py")


def template_dir() -> Traversable:
    """The packaged template folder (a real folder for any pip-installed or checked-out package)."""
    return files("features") / "repo_template"


def init_repo(dest: str | Path, force: bool = False) -> list[Path]:
    """Copy the template into ``dest``; returns the files written (identical ones are skipped).

    Raises FileExistsError naming the first file that differs from the template (nothing is
    written then) unless ``force``.
    """
    dest = Path(dest)
    wanted = {name: (template_dir() / name).read_bytes() for name in TEMPLATE_FILES}
    if not force:
        for name, data in wanted.items():
            target = dest / name
            if target.exists() and target.read_bytes() != data:
                raise FileExistsError(f"{target} differs from the packaged template; "
                                      f"keep it, or pass --force to overwrite it")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in wanted.items():
        target = dest / name
        if not (target.exists() and target.read_bytes() == data):
            target.write_bytes(data)
            written.append(target)
    return written


def build_parser():
    from dashclip.cli import parser, subcommand

    ap = parser("python -m features.repo", __doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    init = subcommand(sub, "init", "copy the feature repo template into a folder")
    init.add_argument("dir", help="the repo folder to create or refresh (e.g. feature_repo)")
    init.add_argument("--force", action="store_true", help="overwrite template files that were edited")
    return ap


def main(argv: list[str] | None = None) -> int:
    from dashclip.cli import run_main

    return run_main(build_parser(), _run, argv)


def _run(args) -> int:
    written = init_repo(args.dir, force=args.force)
    state = f"wrote {', '.join(p.name for p in written)}" if written else "already up to date"
    print(f"feature repo {args.dir}: {state}")
    print(f'next: eval "$(python -m features.store env)" && cd {args.dir} && feast apply')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
