"""A working Feast repo folder from the template shipped inside the package.

    python -m features.repo init DIR [--force]

Copies `feature_store.yaml`, `feature_store.spark.yaml` and `repo.py` (the declarations, built by
`features.definitions`) from the packaged template (`features/repo_template`, a link to the
checkout's `feature_repo/`) into DIR; run `feast apply` there. A file already in DIR that differs
from the template is left alone unless --force, so local edits survive.
Feast writes its registry under `DIR/data/`; the offline tables default to the same folder
(`$DASHCLIP_FEATURE_DATA` overrides it).

Programs and tests open the same declarations without a repo folder: `declarations(data_dir)`
loads the template's `repo.py` for a data folder and returns the Feast objects `feast apply` would
collect; `open_repo_store(data_dir, registry_dir)` builds the template's `feature_store.yaml`
config (registry under `registry_dir`; project, Redis and batch engine overridable) and applies
them.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from contextlib import contextmanager
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from features import columns as C

if TYPE_CHECKING:  # feast is imported where it is used: `python -m features.repo init` needs none of it
    from feast import FeatureStore

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


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def declarations(data_dir: str | Path, model_versions: Sequence[str] | None = None) -> list:
    """The Feast objects the template's `repo.py` declares over `data_dir` (what `feast apply`
    collects: module attributes, and the batch source of each view). `model_versions`: declare
    these instead of the ones `<data_dir>/model_versions.json` lists."""
    env = {C.ENV_DATA_DIR: str(Path(data_dir).resolve())}
    if model_versions is not None:
        env[C.ENV_MODEL_VERSIONS] = ",".join(model_versions)
    path = template_dir() / "repo.py"
    spec = importlib.util.spec_from_file_location(f"_dashclip_feature_repo_{uuid.uuid4().hex}", str(path))
    module = importlib.util.module_from_spec(spec)
    with _environ(env):
        spec.loader.exec_module(module)
    return feast_objects(vars(module).values())


def feast_objects(values) -> list:
    """Entities, data sources, feature views and services among `values` (each once), plus every
    view's batch source: the objects Feast's `parse_repo` collects from a repo module."""
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    out: list = []
    for obj in values:
        found = [obj] if isinstance(obj, (Entity, DataSource, FeatureView, FeatureService)) else []
        if isinstance(obj, FeatureView) and obj.batch_source is not None:
            found.append(obj.batch_source)
        out += [o for o in found if not any(o is x for x in out)]
    return out


def open_repo_store(data_dir: str | Path, registry_dir: str | Path, *, project: str | None = None,
                    redis_url: str | None = None, online_store: dict | None = None,
                    batch_engine: str | dict | None = None, model_versions: Sequence[str] | None = None) -> FeatureStore:
    """The feature repo's store over a data folder, its declarations applied (`feast apply`).

    Config: the template's `feature_store.yaml`, with the registry at
    `registry_dir/registry_<project>.db`; `project` (default the yaml's), the Redis (`redis_url`,
    default `$REDIS_URL`; or a whole `online_store` block, e.g. a cluster) and the `batch_engine`
    (a type name or block; default the yaml's) may be replaced. `model_versions`: as `declarations`.
    """
    import yaml
    from feast import FeatureStore, RepoConfig

    from features.store import feast_connection_string

    raw = yaml.safe_load((template_dir() / "feature_store.yaml").read_text())
    raw["project"] = project = project or raw["project"]
    registry_dir = Path(registry_dir)
    registry_dir.mkdir(parents=True, exist_ok=True)
    raw["registry"] = str(registry_dir / f"registry_{project}.db")
    raw["online_store"] = online_store or {**raw["online_store"], "connection_string": feast_connection_string(redis_url)}
    if batch_engine is not None:
        raw["batch_engine"] = {"type": batch_engine} if isinstance(batch_engine, str) else batch_engine
    store = FeatureStore(config=RepoConfig(**raw))
    store.apply(declarations(data_dir, model_versions))
    return store


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
