"""Where a number came from: versions, the git commit, a fingerprint of the code itself, the device.

Every result records this; a checkpoint is only resumed by the same code fingerprint, which (unlike the git
commit) ignores commits that touch only the analysis, specs, tests or docs, and catches uncommitted edits.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

import almabench
from almabench.cell.config import RunConfig
from almabench.extend.plugins import imported_plugins, used_plugins


def git_state(folder: Path) -> tuple[str | None, bool | None]:
    """The commit the code was run from and whether it had uncommitted changes (None, None outside git)."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "--verify", "HEAD")
        if head.returncode != 0:
            return None, None
        return head.stdout.strip(), bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, code fingerprint, git commit and device."""
    import numpy
    import torchvision

    commit, dirty = git_state(Path(almabench.__file__).parent)
    return {
        "almabench": almabench.__version__,
        "code": code_fingerprint(),
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        **_package_versions("click", "joblib", "pandas", "scikit-learn"),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
    }


def with_plugins(env: dict[str, Any], config: RunConfig) -> dict[str, Any]:
    """env plus, where this process imported any plugin code, "plugins": each plugin entry the cell uses by its
    role (method, arch, pruner, dataset), where it came from and its source's fingerprint
    (almabench.extend.plugins.used_plugins), and under "imported" every plugin module the process imported, used by the
    cell or not (a plugin may patch a built-in method). A cell made with no plugin imported gets no key, so its
    record and checkpoint key are what they were before plugins existed."""

    plugins: dict[str, Any] = dict(used_plugins(config))
    imported = imported_plugins()
    if imported:
        plugins["imported"] = imported
    return {**env, "plugins": plugins} if plugins else env


def _package_versions(*names: str) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


CELL_CODE = ("almabench.cell", "almabench.data", "almabench.methods")  # what decides a cell's numbers


def code_folders() -> dict[str, Path]:
    """Each package of CELL_CODE -> its source folder, found without importing it."""
    folders = {}
    for package in CELL_CODE:
        spec = importlib.util.find_spec(package)
        locations = list(spec.submodule_search_locations or ()) if spec else []
        if not locations:
            raise RuntimeError(f"{package} has no source folder to fingerprint")
        folders[package] = Path(locations[0])
    return folders


def fingerprint_folders(folders: dict[str, Path]) -> str:
    """sha256 (first 16 hex digits) of every .py file under the folders, each named by its package and relative
    path, in a fixed order: a renamed, added, removed or changed file changes it."""
    digest = hashlib.sha256()
    for package, folder in folders.items():
        for path in sorted(folder.rglob("*.py")):
            digest.update(f"{package}/{path.relative_to(folder).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def code_fingerprint() -> str:
    """The fingerprint of everything a cell's numbers depend on: the packages of CELL_CODE (one cell end to end,
    the data sources, the methods). The CLI, the grid, the backends, result files and the analysis are left out:
    they schedule, store and show cells, and a change to them must not mark every new cell "other code" nor
    refuse a resume. A plugin's own source is fingerprinted apart (environment.plugins)."""
    return fingerprint_folders(code_folders())
