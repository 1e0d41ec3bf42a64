"""Grid specs: a TOML file (or the command line) -> the RunConfigs of its cells, checked and resolved.

A spec has two tables: [grid], whose values are lists and form the cartesian product, and [config], scalar
settings shared by every cell (an optional [slurm] table holds what --backend slurm asks for: almabench.backends.slurm).
Any RunConfig field may appear in either; plural spellings (methods, seeds, ...) are accepted in [grid]. Every
cell is checked before any runs (check_grid) and resolved to the values it will use (the dataset's flip and
padding, the method's scope, the epochs' milestones), which name its file.
"""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from almabench.cell.config import RunConfig, RunOptions, range_problem
from almabench.cell.models import ARCHS, build_model
from almabench.cell.protocol import PROTOCOLS
from almabench.cell.sparsity import PRUNERS, SCOPES, prunable_parameters
from almabench.cell.stream import REPLAYS, check_stream
from almabench.data import DATASETS, Dataset, augmentation_of, is_known_dataset, load_dataset
from almabench.errors import AlmabenchError
from almabench.extend.plugins import is_file_spec
from almabench.methods import METHODS
from almabench.names import quoted

FIELDS = {f.name: f for f in fields(RunConfig)}
ALIASES = {
    "methods": "method", "datasets": "dataset", "archs": "arch", "architectures": "arch", "seeds": "seed",
    "pruners": "pruner", "taus": "tau", "replays": "replay", "scopes": "scope", "megabatch": "megabatches",
    "protocols": "protocol",
}
DEFAULT_SPEC = "quick"
MAX_CELLS = 100_000  # of one grid: planning 10^5 cells takes seconds, 10^6 minutes (and is never meant)


@dataclass(frozen=True)
class GridSpec:
    """Axes (field -> values, expanded as a product) and fixed settings shared by every cell."""

    axes: dict[str, tuple[Any, ...]]
    fixed: dict[str, Any]
    source: str = ""
    slurm: dict[str, Any] = field(default_factory=dict)  # the [slurm] table, read by --backend slurm
    plugins: tuple[str, ...] = ()  # `plugins = [...]`: files (absolute, read relative to the spec) or modules

    def with_overrides(self, axes: dict[str, tuple[Any, ...]], fixed: dict[str, Any]) -> GridSpec:
        """Command-line values replace the spec's, whichever table the spec had them in, and an axis keeps its
        place in the spec's order; the source says what is left of the spec (nothing: "the command line")."""
        kept_axes = {k: v for k, v in self.axes.items() if k not in fixed and k not in axes}
        kept_fixed = {k: v for k, v in self.fixed.items() if k not in axes and k not in fixed}
        if not axes and not fixed:
            source = self.source
        elif kept_axes:
            source = f"{self.source} and the command line"
        elif kept_fixed:
            settings = ", ".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in kept_fixed.items())
            source = f"the command line, with {settings} from {self.source}"
        else:
            source = "the command line"
        # An axis the command line sets keeps its place in the spec's order (a spec that lists seed first runs
        # seed by seed, --seeds or not); a new axis goes last.
        ordered = {k: axes.get(k, v) for k, v in self.axes.items() if k in axes or k in kept_axes}
        return GridSpec({**ordered, **axes}, {**kept_fixed, **fixed}, source, self.slurm, self.plugins)

    def configs(self) -> list[RunConfig]:
        """The cells of the grid, each once: a method that never prunes (dense) gets the default pruning
        keys, and one that ignores some (gmp, rigl, set and imp: the pruner) those, so crossing it with several
        pruners or τ runs it once, not once per pruner; an unset scope is the method's own. A method's settings
        (keys that are no config key) reach the methods that declare them, and no other."""
        names = list(self.axes)
        product = math.prod(len(self.axes[n]) for n in names)
        if product > MAX_CELLS:  # counted before a single config is built: a typo'd axis must not hang the run
            sizes = " × ".join(f"{n} {len(self.axes[n]):,}" for n in names if len(self.axes[n]) > 1)
            raise AlmabenchError(f"the grid has {product:,} cells ({sizes}); almabench plans at most {MAX_CELLS:,} "
                                 f"in one run: split it into several specs or --out folders")
        cells = []
        for values in itertools.product(*(self.axes[n] for n in names)):
            keys = {**self.fixed, **dict(zip(names, values))}
            settings = {k: keys.pop(k) for k in list(keys) if k not in FIELDS}
            cells.append(for_method(RunConfig.from_dict(keys), settings))
        given = {k for k in [*self.axes, *self.fixed] if k not in FIELDS}
        unused = sorted(given - {name for c in cells if c.method in METHODS for name in declared(c.method)})
        if unused:
            owners = setting_owners()
            whose = "; ".join(f"{k} of {', '.join(owners.get(k, ['no method']))}" for k in unused)
            raise AlmabenchError(f"setting(s) {', '.join(unused)} belong to no method of this grid ({whose})")
        return list(dict.fromkeys(cells))


PRUNING_KEYS = ("pruner", "tau", "scope", "sample_fraction", "prune_linear")


def for_method(config: RunConfig, settings: dict[str, Any] | None = None) -> RunConfig:
    """The config as its method reads it: the pruning keys it ignores at their defaults, an unset scope resolved
    to the method's own (Method.default_scope), and, of `settings` (and config.settings), the method's own
    declared settings, checked and typed, where they differ from their defaults. An unknown method is left to
    check_config."""
    if config.method not in METHODS:
        return config
    method = METHODS.get(config.method)
    unused = method.ignores if method.prunes else PRUNING_KEYS
    config = config.replace(**{k: FIELDS[k].default for k in unused}) if unused else config
    given = {**dict(config.settings), **(settings or {})}
    own = {}
    for setting in method.settings:
        if setting.name in given:
            value = setting.coerce(given[setting.name])
            if value != setting.coerce(setting.default):
                own[setting.name] = value
    config = config.replace(settings=own)
    return config.replace(scope=method.default_scope) if config.scope is None else config


def declared(method: str) -> list[str]:
    """The names of a registered method's settings."""
    return [s.name for s in METHODS.get(method).settings]


def setting_owners() -> dict[str, list[str]]:
    """Every setting name of the registered methods, with the methods that declare it."""
    owners: dict[str, list[str]] = {}
    for name in METHODS:
        for setting in declared(name):
            owners.setdefault(setting, []).append(name)
    return owners


def canonical_key(key: str, where: str) -> str:
    """A config key (plural spellings accepted) or the name of a registered method's setting."""
    name = ALIASES.get(key, key)
    owners = setting_owners()
    if name not in FIELDS and name not in owners:
        valid = ", ".join(sorted(k for k in FIELDS if k != "settings"))
        methods = "; ".join(f"{k} ({', '.join(v)})" for k, v in sorted(owners.items()))
        raise AlmabenchError(f"{where}: unknown key {key!r}; valid keys: {valid}; method settings: {methods}")
    if name == "settings":
        raise AlmabenchError(f"{where}: set a method's settings by name ({', '.join(sorted(owners))}), not as "
                             f"'settings'")
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
        raise AlmabenchError(f"{quoted(path)}: not valid TOML ({exc})") from None
    except RecursionError:  # tomllib recurses once per nested list or table
        raise AlmabenchError(f"{quoted(path)}: nested too deeply to be a spec") from None
    unknown = sorted(set(doc) - {"grid", "config", "slurm", "description", "plugins"})
    if unknown:
        raise AlmabenchError(f"{quoted(path)}: unknown table(s) {', '.join(unknown)}; a spec has [grid] and [config] "
                             f"(and [slurm]; and, before them, plugins = [...])")
    plugins = doc.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise AlmabenchError(f"{quoted(path)}: plugins must be a list of .py files or module names, got {plugins!r}")
    for plugin in plugins:
        where = Path(plugin_path(plugin, path.parent))
        if plugin_path(plugin, path.parent) != plugin and not where.is_file():
            raise AlmabenchError(f"{quoted(path)}: plugins: no such file {plugin!r} ({where}); a plugin file is read "
                                 f"relative to the spec's folder")
    for table in ("grid", "config", "slurm"):
        if not isinstance(doc.get(table, {}), dict):
            raise AlmabenchError(f"{quoted(path)}: {table} must be a table ([{table}] with key = value lines)")
    if not isinstance(doc.get("description", ""), str):
        raise AlmabenchError(f"{quoted(path)}: description must be a string")
    axes = {}
    for key, values in doc.get("grid", {}).items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise AlmabenchError(f"{quoted(path)}: [grid] {key} is an empty list")
        axes[canonical_key(key, f"{quoted(path)} [grid]")] = tuple(values)
    fixed = {canonical_key(k, f"{quoted(path)} [config]"): v for k, v in doc.get("config", {}).items()}
    both = sorted(set(axes) & set(fixed))
    if both:
        raise AlmabenchError(f"{quoted(path)}: {', '.join(both)} set in both [grid] and [config]")
    try:
        files = tuple(plugin_path(p, path.parent) for p in plugins)
        spec_ = GridSpec(axes, fixed, str(path), doc.get("slurm", {}), files)
        spec_.configs()  # type errors surface now, with the file's name
    except (TypeError, ValueError) as exc:
        raise AlmabenchError(f"{quoted(path)}: bad value ({exc})") from None
    except AlmabenchError as exc:
        raise AlmabenchError(f"{quoted(path)}: {exc}") from None
    return spec_


def plugin_path(spec: str, folder: Path) -> str:
    """A --plugin as every process can import it: a file by its absolute path (read relative to `folder`), a
    module by its name."""

    return str((folder / Path(spec).expanduser()).resolve()) if is_file_spec(spec) else spec


def check_config(config: RunConfig) -> None:
    """Everything about one cell that can be checked without running it (data sizes included)."""
    for registry, name in ((METHODS, config.method), (ARCHS, config.arch), (PRUNERS, config.pruner)):
        registry.get(name)
    REPLAYS.get(config.replay)
    PROTOCOLS.get(config.protocol)
    if config.scope is not None:  # unset: the method's own
        SCOPES.get(config.scope)
    if not is_known_dataset(config.dataset):

        raise AlmabenchError(DATASETS.unknown(config.dataset) + ", or a path to an .npz file or an ImageFolder tree")
    method = METHODS.get(config.method)
    if 0 < config.tau < 1 and method.prunes and method.shrinks:  # tau <= 0: range_problem says so
        raise AlmabenchError(f"tau must be >= 1 for {config.method}: its kept fraction 0.8^δ_t with δ = linspace(1, "
                             f"tau, T) must not grow, since its masks only shrink; got {config.tau}")
    reason = range_problem(config)
    if reason is not None:
        raise AlmabenchError(reason)


def resolve_configs(configs: list[RunConfig], options: RunOptions, strict: bool = True) -> list[RunConfig]:
    """Each cell with the flip, crop padding, scope and milestones it will use (the dataset's, the method's and the
    epochs' wherever unset), each distinct cell once: cells are named by these values. strict=False leaves a cell
    whose data cannot be read, or whose method is unknown, as it is (its name then matches no result file)."""
    recipes = {}
    for name in dict.fromkeys(c.dataset for c in configs):
        try:
            recipes[name] = augmentation_of(name, options.data_root, options.download)
        except AlmabenchError:
            if strict:
                raise
    return list(dict.fromkeys(
        c.resolve(recipes[c.dataset].flip, recipes[c.dataset].crop_padding, scope=METHODS.get(c.method).default_scope)
        if c.dataset in recipes and (strict or c.method in METHODS) else c
        for c in configs))


def check_resolved(config: RunConfig, data: Dataset) -> None:
    """What can only be checked against the data: the crop fits the image, and pruning keeps some weights."""
    size = min(data.image_size)
    if config.crop_padding >= size:
        raise AlmabenchError(f"{quoted(config.dataset)}: crop_padding = {config.crop_padding} px is as large as its "
                             f"{size} px images; use 0..{size - 1} (or -1: the dataset's, {data.crop_padding} px)")
    if METHODS.get(config.method).prunes:
        with torch.device("meta"):  # shapes only: no memory, no time
            model = build_model(config.arch, data.num_classes, data.channels, data.image_size[0])
        params = prunable_parameters(model, config.prune_linear)
        total = sum(p.numel() for p in params.values())
        lowest = min(0.8 ** config.tau, 0.8)  # δ runs from 1 to τ
        if round(lowest * total) < 1:
            raise AlmabenchError(f"tau = {config.tau} keeps 0.8^tau = {lowest:.3g} of {config.arch}'s {total:,} "
                                 f"prunable weights, i.e. none; use a smaller tau")
        try:  # a scope that keeps layers dense must leave them room in the budget
            SCOPES.get(config.scope or "global")({n: tuple(p.shape) for n, p in params.items()}, lowest)
        except AlmabenchError as exc:
            raise AlmabenchError(f"{config.method} on {config.arch}, scope {config.scope}: {exc}") from None


def check_grid(configs: list[RunConfig], options: RunOptions) -> list[RunConfig]:
    """Check every cell before any runs and return them resolved (each with the flip, crop padding, scope and
    milestones it will use: the dataset's, the method's and the epochs' wherever unset), each distinct cell once.

    Each dataset is loaded once, to check that the stream and the crop fit it."""
    if not configs:
        raise AlmabenchError("the grid is empty")
    for config in configs:
        check_config(config)
    datasets = {name: load_dataset(name, options.data_root, options.download)
                for name in dict.fromkeys(c.dataset for c in configs)}
    streams = {(c.dataset, c.megabatches, c.val_fraction, c.stream_images) for c in configs}
    for dataset, megabatches, val_fraction, stream_images in sorted(streams, key=repr):
        try:
            check_stream(datasets[dataset].n_train, megabatches, val_fraction, stream_images)
        except AlmabenchError as exc:
            raise AlmabenchError(f"{quoted(dataset)}: {exc}") from None
    resolved = resolve_configs(configs, options)
    for config in resolved:
        check_resolved(config, datasets[config.dataset])
    return list(dict.fromkeys(resolved))


# the axes the shipped specs vary
DESCRIBED_WHEN_SET = ("stream_images", "pruner", "tau", "scope", "replay", "protocol")


def describe(config: RunConfig) -> str:
    """A cell in one line: its main axes and epochs (always: two cells differing only in epochs must not read
    alike), plus those of DESCRIBED_WHEN_SET that differ from their defaults (an unset one is not shown)."""
    changed = config.named()
    extra = "".join(f" {k}={changed[k]}" for k in DESCRIBED_WHEN_SET if changed.get(k) is not None)
    extra += "".join(f" {k}={v}" for k, v in config.settings)
    return (f"{config.method} {config.dataset} {config.arch} T={config.megabatches} epochs={config.epochs} "
            f"seed={config.seed}{extra}")
