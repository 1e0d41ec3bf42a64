"""Methods, pruners, architectures, datasets and export formats from outside almabench.

Two ways in, one registry each kind (almabench.registry): installed packages declare entry points
(`[project.entry-points."almabench.methods"] mine = "my_pkg.method:Mine"`), found on a registry's first use in
every process; a plain file or module is named with `--plugin FILE|MODULE` (or `plugins = [...]` in a spec)
and registers with the usual decorators when imported. `--plugin` travels in RunOptions, so every process that
runs a cell (loky, Dask, Ray workers) imports it before the cell starts, exactly as the parent did.

A plugin's code is part of a cell's provenance: `used_plugins(config)` is what the result's environment records
and what a checkpoint's key holds, so a resume refuses a checkpoint made by other plugin code. A plugin is code
that runs on import and may change anything (patch a built-in method), so every plugin module a process imported
(`imported_plugins`) is named in every result that process writes, whether or not its cell uses it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from almabench.cell.config import RunConfig
from almabench.cell.models import ARCHS
from almabench.cell.sparsity import PRUNERS
from almabench.data import DATASETS, is_known_dataset
from almabench.errors import AlmabenchError
from almabench.methods import METHODS
from almabench.registry import IMPORTED, Origin, Registry, loading

_LOADED: dict[str, Origin] = {}  # --plugin spec (a resolved path or a module name) -> its origin, once per process
def is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def is_loaded(spec: str) -> bool:
    """Whether this process has imported the --plugin value already (load_plugins would not import it again)."""
    return (str(Path(spec).resolve()) if is_file_spec(spec) else spec) in _LOADED


def load_plugins(specs: tuple[str, ...] | list[str]) -> None:
    """Import each `--plugin` (a .py file or a module name) once per process; its decorators register what it
    brings. One line (AlmabenchError) naming the plugin where one is missing, fails to import or takes a name."""
    for spec in specs:
        key = str(Path(spec).resolve()) if is_file_spec(spec) else spec
        if key in _LOADED:
            continue
        origin = Origin("file", key, module=_module_name(Path(key))) if is_file_spec(spec) else Origin(
            "module", spec, module=spec)
        IMPORTED[(origin.kind, origin.where)] = origin  # before it runs: a failed import ran code too
        with loading(origin):
            _import(spec, origin)
        _LOADED[key] = origin


def load_for_cell(config: RunConfig, specs: tuple[str, ...]) -> None:
    """In the process that runs a cell (a worker): import the run's --plugin values. One that fails here after it
    imported in the parent fails this cell (its failure record says so) only where the cell needs a name it
    would have registered; otherwise it is one warning line and the cell runs."""
    import os
    import platform
    import warnings


    problems = []
    for spec in specs:
        try:
            load_plugins((spec,))
        except AlmabenchError as exc:
            problems.append(str(exc))
    if not problems:
        return
    where = f"in the process that runs this cell ({platform.node()}, pid {os.getpid()}, {sys.executable})"
    needed = [(registry.kind, name) for registry, name in ((METHODS, config.method), (ARCHS, config.arch),
                                                          (PRUNERS, config.pruner)) if name not in registry]
    if not is_known_dataset(config.dataset):
        needed.append((DATASETS.kind, config.dataset))
    if needed:
        kind, name = needed[0]
        raise AlmabenchError(f"{kind} {name!r} is not registered {where}: {'; '.join(problems)}; the plugin must "
                             f"be importable wherever cells run")
    warnings.warn(f"{'; '.join(problems)} ({where}; this cell does not use it)", stacklevel=2)


def _module_name(path: Path) -> str:
    """The name a plugin file is imported under: its stem, made unique by its folder (two my_method.py apart)."""
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"almabench_plugin_{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def _import(spec: str, origin: Origin) -> None:
    if origin.kind == "file":
        path = Path(origin.where)
        if not path.is_file():
            raise AlmabenchError(f"--plugin {spec}: no such file; give a .py file that registers a method, or an "
                                 f"importable module name")
        module_spec = importlib.util.spec_from_file_location(origin.module, path)
        if module_spec is None or module_spec.loader is None:
            raise AlmabenchError(f"--plugin {spec}: not a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[origin.module] = module  # dataclasses and pickling look a class's module up here
        run: Callable[[], Any] = functools.partial(module_spec.loader.exec_module, module)
    else:
        if importlib.util.find_spec(spec.split(".")[0]) is None:
            raise AlmabenchError(f"--plugin {spec}: no module named {spec!r} here, and no such file; give a .py "
                                 f"file or a module importable in this Python ({sys.executable})")
        run = functools.partial(importlib.import_module, spec)
    try:
        with _announced_if_slow(f"importing --plugin {spec} ({origin.describe()}): it has not returned yet"):
            run()
    except AlmabenchError:
        sys.modules.pop(origin.module, None)
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin's import may raise anything, exit() too
        sys.modules.pop(origin.module, None)
        raise AlmabenchError(f"--plugin {spec} ({origin.describe()}) failed to import: "
                             f"{type(exc).__name__}: {exc}") from None


SLOW_IMPORT = 5.0  # seconds: an import still running after this is said on stderr (one that sleeps or waits)


@contextlib.contextmanager
def _announced_if_slow(message: str) -> Iterator[None]:
    """One line on stderr if the block is still running after SLOW_IMPORT seconds, so a plugin that hangs on
    import is named instead of leaving the command silent."""
    after = SLOW_IMPORT
    timer = threading.Timer(after, lambda: print(f"note: {message} (after {after:g} s)", file=sys.stderr,
                                                 flush=True))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def registries() -> dict[str, Registry]:
    """Entry-point group -> the registry it fills."""
    from almabench.analysis.export import WRITERS

    return {"almabench.methods": METHODS, "almabench.pruners": PRUNERS, "almabench.architectures": ARCHS,
            "almabench.datasets": DATASETS, "almabench.exporters": WRITERS}


def forget() -> None:
    """Unregister every plugin entry and forget loaded files (for tests that load one plugin after another), as a
    new process would: joblib's reusable loky workers, which imported them for earlier cells and would name them
    in every later result (imported_plugins), are shut down too."""
    for registry in registries().values():
        registry.remove_plugins()
    for origin in _LOADED.values():
        if origin.kind == "file":
            sys.modules.pop(origin.module, None)
    _LOADED.clear()
    IMPORTED.clear()
    from joblib.externals.loky import reusable_executor

    workers = getattr(reusable_executor, "_executor", None)
    if workers is not None:
        workers.shutdown(wait=True, kill_workers=True)


def used_plugins(config: RunConfig) -> dict[str, dict[str, str]]:
    """The plugin entries a cell runs (its method, architecture, pruner, dataset) with where each came from and a
    fingerprint of its source: {} for a cell of almabench's own code only."""

    out = {}
    for role, registry, name in (("method", METHODS, config.method), ("arch", ARCHS, config.arch),
                                 ("pruner", PRUNERS, config.pruner), ("dataset", DATASETS, config.dataset)):
        origin = registry.origin(name)
        if origin is not None:
            out[role] = {"name": name, "origin": origin.kind, "from": origin.where, "package": origin.package,
                         "version": origin.version, "fingerprint": source_fingerprint(origin.module)}
    return out


def imported_plugins() -> list[dict[str, str]]:
    """Every plugin module this process imported (or began to): --plugin files and modules, a spec's plugins and
    installed entry points (every registry's group is discovered first, so that the list does not depend on which
    registries this process happened to use), each with where it came from and its source's fingerprint."""
    for registry in registries().values():
        registry.discover()
    return [{"origin": o.kind, "from": o.where, "package": o.package, "version": o.version,
             "fingerprint": source_fingerprint(o.module)} for o in sorted(IMPORTED.values(),
                                                                         key=lambda o: (o.kind, o.where))]


def source_fingerprint(module: str) -> str:
    """sha256 (16 hex digits) of the plugin's source: its top-level package's .py files, or its one file."""
    top = sys.modules.get(module if module.startswith("almabench_plugin_") else module.split(".")[0])
    file = getattr(top, "__file__", None)
    if file is None:
        return "unknown"
    path = Path(file)
    files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.relative_to(path.parent).as_posix()}\0".encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def describe_origin(registry: Registry, name: str) -> str:
    """What `almabench list` says after a plugin entry: its package and version, or its file."""
    origin = registry.origin(name)
    if origin is None:
        return ""
    if origin.kind == "entry point":
        return f"[plugin: {origin.package} {origin.version}]"
    return f"[plugin: {origin.where}]"
