"""Grid specs (TOML) -> a list of RunConfigs -> the missing cells run with joblib, one JSON file each.

A spec has two tables: [grid], whose values are lists and form the cartesian product, and [config], scalar
settings shared by every cell. Any RunConfig field may appear in either; plural spellings (methods, seeds,
...) are accepted in [grid].

Cells run in-process, in joblib's loky worker processes, or on a Dask or Ray cluster (the same files come
out). A cell is done when its result file is; failed and missing cells are run again, a corrupt file is moved
aside (never deleted) and its cell run again, and a cell killed midway resumes from its last megabatch.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import tomllib
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from joblib import Parallel, delayed

from almabench.backends import BACKENDS, check_backend
from almabench.config import SCOPES, RunConfig, RunOptions
from almabench.data import is_known_dataset, load_dataset
from almabench.errors import AlmabenchError
from almabench.methods import METHODS
from almabench.models import ARCHS
from almabench.protocol import PROTOCOLS
from almabench.run import resolve_device, run_cell
from almabench.sparsity import PRUNERS
from almabench.store import checkpoint_path, move_aside, result_path, result_state, write_json_atomic
from almabench.stream import REPLAYS, check_stream, make_stream
from almabench.train import resolve_precision

FIELDS = {f.name: f for f in fields(RunConfig)}
ALIASES = {
    "methods": "method", "datasets": "dataset", "archs": "arch", "architectures": "arch", "seeds": "seed",
    "pruners": "pruner", "taus": "tau", "replays": "replay", "scopes": "scope", "megabatch": "megabatches",
    "protocols": "protocol",
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
        """The cells of the grid, each once: a method that never prunes (dense) gets the default pruning
        keys, and one that ignores some (gmp, rigl, set and imp: the pruner) those, so crossing it with several
        pruners or τ runs it once, not once per pruner."""
        names = list(self.axes)
        cells = []
        for values in itertools.product(*(self.axes[n] for n in names)):
            cells.append(without_unused_pruning_keys(RunConfig.from_dict({**self.fixed, **dict(zip(names, values))})))
        return list(dict.fromkeys(cells))


PRUNING_KEYS = ("pruner", "tau", "scope", "sample_fraction", "prune_linear")


def without_unused_pruning_keys(config: RunConfig) -> RunConfig:
    if config.method in METHODS:
        method = METHODS.get(config.method)
        unused = method.ignores if method.prunes else PRUNING_KEYS
        return config.replace(**{k: FIELDS[k].default for k in unused}) if unused else config
    return config


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
    for table in ("grid", "config"):
        if not isinstance(doc.get(table, {}), dict):
            raise AlmabenchError(f"{path}: {table} must be a table ([{table}] with key = value lines)")
    if not isinstance(doc.get("description", ""), str):
        raise AlmabenchError(f"{path}: description must be a string")
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
        spec_.configs()  # type errors surface now, with the file's name
    except (TypeError, ValueError) as exc:
        raise AlmabenchError(f"{path}: bad value ({exc})") from None
    except AlmabenchError as exc:
        raise AlmabenchError(f"{path}: {exc}") from None
    return spec_


def check_config(config: RunConfig) -> None:
    """Everything about one cell that can be checked without running it (data sizes included)."""
    for registry, name in ((METHODS, config.method), (ARCHS, config.arch), (PRUNERS, config.pruner)):
        registry.get(name)
    REPLAYS.get(config.replay)
    PROTOCOLS.get(config.protocol)
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


DESCRIBED_WHEN_SET = ("pruner", "tau", "scope", "replay", "protocol")  # the axes the shipped specs vary


def describe(config: RunConfig) -> str:
    """A cell in one line: its main axes, plus those of DESCRIBED_WHEN_SET that differ from their defaults."""
    changed = config.non_default()
    extra = "".join(f" {k}={changed[k]}" for k in DESCRIBED_WHEN_SET if k in changed)
    return f"{config.method} {config.dataset} {config.arch} T={config.megabatches} seed={config.seed}{extra}"


def _show_step(config: RunConfig) -> Callable[[dict[str, Any]], None]:
    """One line per finished megabatch: a long cell (hours at the paper's settings) shows its progress."""
    def show(step: dict[str, Any]) -> None:
        print(f"  {describe(config)} step {step['step']}/{config.megabatches}: accuracy "
              f"{step['test_accuracy']:.2f} %, density {step['density']:.3f} ({step['seconds']:.1f} s)", flush=True)

    return show


def run_and_store(config: RunConfig, options: RunOptions, out: Path) -> dict[str, Any]:
    """Run one cell in a worker and write its result; a failure writes a failure record instead.

    The cell checkpoints after every megabatch in out/.checkpoints/ and resumes from there if it was killed;
    the checkpoint is deleted once the result is written (a failed cell keeps it: a rerun after an
    out-of-memory error goes on from the last good megabatch).
    """
    path = result_path(out, config)
    checkpoint = checkpoint_path(out, config)
    resumed: list[int] = []
    try:
        result = run_cell(config, options, progress=_show_step(config), checkpoint=checkpoint,
                          on_resume=resumed.append)
        write_json_atomic(path, result)  # inside: a value JSON cannot hold (NaN) fails this cell only
    except Exception as exc:  # noqa: BLE001 - one failed cell must not stop the others
        result = {
            "status": "failed",
            "config_hash": config.hash(),
            "config": config.to_dict(),
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
        write_json_atomic(path, result)
    if result["status"] == "ok":
        checkpoint.unlink(missing_ok=True)
    return {"config": config, "path": str(path), "status": result["status"], "result": result,
            "resumed_after": resumed[0] if resumed else 0}


@dataclass(frozen=True)
class GridOutcome:
    total: int
    skipped: int
    ran: int
    failed: list[str]
    corrupt: list[str] = field(default_factory=list)  # where corrupt files were moved aside to


def prepare_out(out: Path) -> None:
    """Create the results folder and prove it takes a file (os.access says yes to root on a read-only one)."""
    if out.exists() and not out.is_dir():
        raise AlmabenchError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlmabenchError(f"cannot create results folder {out}: {exc.strerror or exc}") from None
    try:
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise AlmabenchError(f"results folder {out} is not writable: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class CellState:
    config: RunConfig
    path: Path
    state: str  # done, failed, corrupt, missing (store.STATES)
    detail: str = ""  # the error of a failed cell, what is wrong with a corrupt file


def cell_states(configs: list[RunConfig], out: Path) -> list[CellState]:
    """The state of every (distinct) cell's file in out/, in grid order."""
    cells = []
    for config in dict.fromkeys(configs):
        path = result_path(out, config)
        state, detail = result_state(path)
        cells.append(CellState(config, path, state, detail))
    return cells


def run_grid(
    configs: list[RunConfig],
    options: RunOptions,
    out: Path,
    jobs: int = 1,
    on_done: Callable[[int, int, dict[str, Any]], None] | None = None,
    backend: str = "loky",
    scheduler: str | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> GridOutcome:
    """Run every cell whose result file is missing or failed, `jobs` at a time, results in out/.

    backend: loky (joblib's worker processes on this machine; jobs = 1 runs in-process), dask (a Dask
    distributed cluster at `scheduler`, or a LocalCluster of `jobs` workers) or ray (a Ray cluster at
    `scheduler`, or a local one). jobs = -1 with dask or ray: as many cells at once as the cluster has workers.
    A corrupt file in out/ is moved aside to <name>.corrupt (with a warning) and its cell rerun.
    on_start(cells, cells to run) is called once every check has passed, before the first cell runs.
    """
    if jobs < 1 and not (jobs == -1 and BACKENDS.get(backend).cluster):
        raise AlmabenchError(f"--jobs must be at least 1, got {jobs}")
    check_backend(backend, scheduler)
    check_grid(configs, options)
    precision = resolve_precision(options.precision, resolve_device(options.device))
    prepare_out(out)
    cells = cell_states(configs, out)
    todo = [cell.config for cell in cells if cell.state != "done"]
    _warn_other_precision(cells, precision)
    if on_start is not None:
        on_start(len(cells), len(todo))
    corrupt = []
    for cell in cells:
        if cell.state == "corrupt":
            aside = move_aside(cell.path)
            corrupt.append(str(aside))
            warnings.warn(f"{cell.path} is not a result ({cell.detail}); moved aside to {aside.name}, "
                          f"its cell ({describe(cell.config)}) runs again", stacklevel=2)
    if jobs > 1 and options.threads == 0:
        options = RunOptions(**{**options.__dict__, "threads": max(1, (os.cpu_count() or 1) // jobs)})
    failed = []
    for i, done in enumerate(_execute(todo, options, out, jobs, backend, scheduler), start=1):
        if done["status"] != "ok":
            failed.append(done["path"])
        if on_done is not None:
            on_done(i, len(todo), done)
    return GridOutcome(total=len(cells), skipped=len(cells) - len(todo), ran=len(todo), failed=failed,
                       corrupt=corrupt)


def _warn_other_precision(cells: list[CellState], precision: str) -> None:
    """Precision is not part of a cell's name (bf16 and fp32 are two roundings of one computation), so a
    cell done in the other one is kept: say so, rather than let the tables mix them unnoticed."""
    other = Counter(cell.detail for cell in cells if cell.state == "done" and cell.detail not in ("", precision))
    for recorded, count in sorted(other.items()):
        warnings.warn(f"{count} cell(s) in this folder were run in {recorded} and are kept; this run computes in "
                      f"{precision} (another --out runs them again in {precision})", stacklevel=3)


def _execute(todo: list[RunConfig], options: RunOptions, out: Path, jobs: int, backend: str = "loky",
             scheduler: str | None = None) -> Iterator[dict[str, Any]]:
    if not todo:
        return
    chosen = BACKENDS.get(backend)
    if not chosen.cluster and (jobs == 1 or len(todo) <= 1):  # in-process: no worker start-up, same numbers
        yield from (run_and_store(c, options, out) for c in todo)
        return
    tasks: Iterable = (delayed(run_and_store)(c, options, out) for c in todo)
    n_jobs = min(jobs, len(todo)) if jobs > 0 else jobs
    with chosen.connect(scheduler, jobs if jobs > 0 else (os.cpu_count() or 1)):
        return_as = "generator_unordered" if chosen.yields_as_done else "list"
        yield from Parallel(n_jobs=n_jobs, return_as=return_as)(tasks)


# ----------------------------------------------------------------------------------------------------------
# Planning: what a grid still costs (almabench run --dry-run) and what a results folder holds (status).


def image_passes(config: RunConfig, n_train: int) -> int:
    """Training images one cell processes: epochs × Σ_t |train_t| (the replay set of each step)."""
    stream = make_stream(n_train, config.megabatches, 0, config.val_fraction)
    policy = REPLAYS.get(config.replay)
    per_step = sum(sum(len(stream[i].train) for i in policy(t)) for t in range(1, config.megabatches + 1))
    return config.epochs * per_step


def _rate_key(arch: str, channels: int, image_size: Any, device: str) -> tuple:
    return arch, int(channels), tuple(int(x) for x in image_size), device.split(":")[0]


def measured_rates(out: Path) -> dict[tuple, tuple[float, int]]:
    """End-to-end training images per second (pruning and evaluation included) of the finished results in
    out/, by (arch, channels, image size, device type): {key: (images/s, number of results)}."""
    totals: dict[tuple, list[float]] = {}
    for path in sorted(out.glob("*.json")) if out.is_dir() else []:
        state, _ = result_state(path)
        if state != "done":
            continue
        try:
            result = json.loads(path.read_text())
            data, env = result["data"], result["environment"]
            key = _rate_key(result["config"]["arch"], data["channels"], data["image_size"], env["device"])
            images = result["config"]["epochs"] * sum(s["train_size"] for s in result["steps"])
            seconds = float(result["seconds"])
        except (KeyError, TypeError, ValueError):
            continue
        if seconds > 0 and images > 0:
            entry = totals.setdefault(key, [0.0, 0.0, 0])
            entry[0] += images
            entry[1] += seconds
            entry[2] += 1
    return {k: (v[0] / v[1], int(v[2])) for k, v in totals.items()}


@dataclass
class Plan:
    cells: list[CellState]
    passes: dict[RunConfig, int | None]  # training image-passes of each cell, None where the data is unknown
    seconds: dict[RunConfig, float | None]  # estimated seconds of each cell still to run
    rates: dict[tuple, tuple[float, int]]  # rate key -> (images/s, results measured)
    keys: dict[RunConfig, tuple]
    notes: list[str]

    @property
    def todo(self) -> list[CellState]:
        return [c for c in self.cells if c.state != "done"]

    def counts(self) -> dict[str, int]:
        return {state: sum(c.state == state for c in self.cells) for state in ("done", "failed", "corrupt", "missing")}


def plan_grid(configs: list[RunConfig], options: RunOptions, out: Path) -> Plan:
    """What running the grid into out/ would do, without running or writing anything."""
    if not configs:
        raise AlmabenchError("the grid is empty")
    for config in configs:
        check_config(config)
    if out.exists() and not out.is_dir():
        raise AlmabenchError(f"--out {out} exists and is not a folder")
    device = resolve_device(options.device).type
    cells = cell_states(configs, out)
    rates = measured_rates(out)
    notes, shapes = [], {}
    for name in dict.fromkeys(c.config.dataset for c in cells):
        try:
            data = load_dataset(name, options.data_root, options.download)
            shapes[name] = (data.n_train, data.channels, data.image_size)
        except AlmabenchError as exc:
            notes.append(f"{exc} (its cells' cost is unknown; the run would stop here)")
    passes: dict[RunConfig, int | None] = {}
    seconds: dict[RunConfig, float | None] = {}
    keys: dict[RunConfig, tuple] = {}
    for cell in cells:
        c = cell.config
        if c.dataset not in shapes:
            passes[c] = seconds[c] = None
            continue
        n_train, channels, size = shapes[c.dataset]
        try:
            check_stream(n_train, c.megabatches, c.val_fraction)
        except AlmabenchError as exc:
            raise AlmabenchError(f"{c.dataset}: {exc}") from None
        passes[c] = image_passes(c, n_train)
        keys[c] = _rate_key(c.arch, channels, size, device)
        rate = rates.get(keys[c])
        seconds[c] = passes[c] / rate[0] if rate else None
    return Plan(cells, passes, seconds, rates, keys, notes)


def folder_states(out: Path) -> list[tuple[Path, str, str, dict[str, Any] | None]]:
    """Every <hash>.json in out/: (path, state, detail, config or None)."""
    rows = []
    for path in sorted(out.glob("*.json")):
        state, detail = result_state(path)
        config = None
        if state in ("done", "failed"):
            try:
                config = json.loads(path.read_text()).get("config")
            except (OSError, ValueError):
                config = None
        rows.append((path, state, detail, config if isinstance(config, dict) else None))
    return rows
