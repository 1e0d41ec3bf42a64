"""Grid specs (TOML) -> a list of RunConfigs -> the missing cells run with joblib, one JSON file each.

A spec has two tables: [grid], whose values are lists and form the cartesian product, and [config], scalar
settings shared by every cell. Any RunConfig field may appear in either; plural spellings (methods, seeds,
...) are accepted in [grid].
"""

from __future__ import annotations

import itertools
import os
import tomllib
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from joblib import Parallel, delayed

from almabench.config import REPLAYS, SCOPES, RunConfig, RunOptions
from almabench.data import is_known_dataset, load_dataset
from almabench.errors import AlmabenchError
from almabench.methods import METHODS
from almabench.models import ARCHS
from almabench.run import run_cell
from almabench.sparsity import PRUNERS
from almabench.store import read_result, result_path, write_json_atomic
from almabench.stream import check_stream

FIELDS = {f.name: f for f in fields(RunConfig)}
ALIASES = {
    "methods": "method", "datasets": "dataset", "archs": "arch", "architectures": "arch", "seeds": "seed",
    "pruners": "pruner", "taus": "tau", "replays": "replay", "scopes": "scope", "megabatch": "megabatches",
}
DEFAULT_SPEC = "quick"


@dataclass(frozen=True)
class GridSpec:
    """Axes (field -> values, expanded as a product) and fixed settings shared by every cell."""

    axes: dict[str, tuple[Any, ...]]
    fixed: dict[str, Any]
    source: str = ""

    def with_overrides(self, axes: dict[str, tuple[Any, ...]], fixed: dict[str, Any]) -> GridSpec:
        """Command-line values replace the spec's, whichever table the spec had them in."""
        new_axes = {k: v for k, v in self.axes.items() if k not in fixed}
        new_fixed = {k: v for k, v in self.fixed.items() if k not in axes}
        return GridSpec({**new_axes, **axes}, {**new_fixed, **fixed}, self.source)

    def configs(self) -> list[RunConfig]:
        names = list(self.axes)
        cells = []
        for values in itertools.product(*(self.axes[n] for n in names)):
            cells.append(RunConfig.from_dict({**self.fixed, **dict(zip(names, values))}))
        return cells


def canonical_key(key: str, where: str) -> str:
    name = ALIASES.get(key, key)
    if name not in FIELDS:
        valid = ", ".join(sorted(FIELDS))
        raise AlmabenchError(f"{where}: unknown key {key!r}; valid keys: {valid}")
    return name


def spec_path(spec: str | None) -> Path:
    """A spec file by path, or by the name of one shipped in benchmarks/ (e.g. 'quick')."""
    spec = spec or DEFAULT_SPEC
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    shipped = resources.files("almabench.benchmarks") / f"{spec.removesuffix('.toml')}.toml"
    if shipped.is_file():
        return Path(str(shipped))
    raise AlmabenchError(f"spec {spec!r} not found; shipped specs: {', '.join(shipped_specs())}")


def shipped_specs() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files("almabench.benchmarks").iterdir()
                  if p.name.endswith(".toml"))


def load_spec(spec: str | None) -> GridSpec:
    path = spec_path(spec)
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise AlmabenchError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - {"grid", "config", "description"})
    if unknown:
        raise AlmabenchError(f"{path}: unknown table(s) {', '.join(unknown)}; a spec has [grid] and [config]")
    axes = {}
    for key, values in doc.get("grid", {}).items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise AlmabenchError(f"{path}: [grid] {key} is an empty list")
        axes[canonical_key(key, f"{path} [grid]")] = tuple(values)
    fixed = {canonical_key(k, f"{path} [config]"): v for k, v in doc.get("config", {}).items()}
    both = sorted(set(axes) & set(fixed))
    if both:
        raise AlmabenchError(f"{path}: {', '.join(both)} set in both [grid] and [config]")
    try:
        spec_ = GridSpec(axes, fixed, str(path))
        spec_.configs()[:1]  # type errors surface now, with the file's name
    except (TypeError, ValueError) as exc:
        raise AlmabenchError(f"{path}: bad value ({exc})") from None
    return spec_


def check_config(config: RunConfig) -> None:
    """Everything about one cell that can be checked without running it (data sizes included)."""
    for registry, name in ((METHODS, config.method), (ARCHS, config.arch), (PRUNERS, config.pruner)):
        registry.get(name)
    if config.replay not in REPLAYS:
        raise AlmabenchError(f"unknown replay policy {config.replay!r}; choose from: {', '.join(REPLAYS)}")
    if config.scope not in SCOPES:
        raise AlmabenchError(f"unknown pruning scope {config.scope!r}; choose from: {', '.join(SCOPES)}")
    if not is_known_dataset(config.dataset):
        from almabench.data import DATASETS

        raise AlmabenchError(DATASETS.unknown(config.dataset) + ", or a path to an .npz file or an ImageFolder tree")
    checks = [
        (config.tau > 0, f"tau must be > 0, got {config.tau}"),
        (config.megabatches >= 1, f"megabatches must be at least 1, got {config.megabatches}"),
        (config.epochs >= 0, f"epochs must be >= 0, got {config.epochs}"),
        (config.batch_size >= 2, f"batch_size must be at least 2, got {config.batch_size}"),
        (config.lr > 0, f"lr must be > 0, got {config.lr}"),
        (0 < config.sample_fraction <= 1, f"sample_fraction must be in (0, 1], got {config.sample_fraction}"),
        (0 < config.val_fraction < 1, f"val_fraction must be in (0, 1), got {config.val_fraction}"),
    ]
    for ok, message in checks:
        if not ok:
            raise AlmabenchError(message)


def check_grid(configs: list[RunConfig], options: RunOptions) -> None:
    """Check every cell before any runs; each dataset is loaded once to check the stream fits it."""
    if not configs:
        raise AlmabenchError("the grid is empty")
    for config in configs:
        check_config(config)
    for dataset, megabatches, val_fraction in sorted({(c.dataset, c.megabatches, c.val_fraction) for c in configs}):
        data = load_dataset(dataset, options.data_root, options.download)
        try:
            check_stream(data.n_train, megabatches, val_fraction)
        except AlmabenchError as exc:
            raise AlmabenchError(f"{dataset}: {exc}") from None


def describe(config: RunConfig) -> str:
    return f"{config.method} {config.dataset} {config.arch} T={config.megabatches} seed={config.seed}"


def run_and_store(config: RunConfig, options: RunOptions, out: Path) -> dict[str, Any]:
    """Run one cell in a worker and write its result; a failure writes a failure record instead."""
    path = result_path(out, config)
    try:
        result = run_cell(config, options)
    except Exception as exc:  # noqa: BLE001 - one failed cell must not stop the others
        result = {
            "status": "failed",
            "config_hash": config.hash(),
            "config": config.to_dict(),
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
    write_json_atomic(path, result)
    return {"config": config, "path": str(path), "status": result["status"], "result": result}


@dataclass(frozen=True)
class GridOutcome:
    total: int
    skipped: int
    ran: int
    failed: list[str]


def prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise AlmabenchError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlmabenchError(f"cannot create results folder {out}: {exc.strerror}") from None
    if not os.access(out, os.W_OK):
        raise AlmabenchError(f"results folder {out} is not writable")


def run_grid(
    configs: list[RunConfig],
    options: RunOptions,
    out: Path,
    jobs: int = 1,
    on_done: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> GridOutcome:
    """Run every cell whose result file is missing (or failed), `jobs` at a time, results in out/."""
    if jobs < 1:
        raise AlmabenchError(f"--jobs must be at least 1, got {jobs}")
    check_grid(configs, options)
    prepare_out(out)
    unique = list(dict.fromkeys(configs))
    todo = [c for c in unique if read_result(result_path(out, c)) is None]
    if jobs > 1 and options.threads == 0:
        options = RunOptions(**{**options.__dict__, "threads": max(1, (os.cpu_count() or 1) // jobs)})
    failed = []
    for i, done in enumerate(_execute(todo, options, out, jobs), start=1):
        if done["status"] != "ok":
            failed.append(done["path"])
        if on_done is not None:
            on_done(i, len(todo), done)
    return GridOutcome(total=len(unique), skipped=len(unique) - len(todo), ran=len(todo), failed=failed)


def _execute(todo: list[RunConfig], options: RunOptions, out: Path, jobs: int) -> Iterator[dict[str, Any]]:
    if jobs == 1 or len(todo) <= 1:  # in-process: no worker start-up, same numbers
        return (run_and_store(c, options, out) for c in todo)
    tasks: Iterable = (delayed(run_and_store)(c, options, out) for c in todo)
    return Parallel(n_jobs=min(jobs, len(todo)), return_as="generator_unordered")(tasks)
