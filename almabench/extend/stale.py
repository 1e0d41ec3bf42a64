"""Cells made by other plugin code than the code installed now.

A cell's file name covers its config, not a plugin's source: after a plugin file changes, its finished cells
still read as done. Their results record the source's fingerprint (environment.plugins, provenance.with_plugins),
so `run`, `run --dry-run` and `status` can name them, and `run --rerun-changed` redoes exactly those (the old
file moved aside to <name>.replaced, never deleted).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from almabench.cell.config import RunConfig
from almabench.cell.models import ARCHS
from almabench.cell.sparsity import PRUNERS
from almabench.data import DATASETS
from almabench.extend.plugins import source_fingerprint, used_plugins
from almabench.methods import METHODS
from almabench.results.store import CellFile, UnreadableFile, move_aside, read_json

ROLES = ("method", "arch", "pruner", "dataset")


def plugin_code_change(path: Path, config: RunConfig) -> str:
    """Why the finished result at path was made by other plugin code than the code installed now for config's
    method, architecture, pruner or dataset ('method my-sp: code 1a2b3c4d5e6f7a8b then, 9f8e7d6c5b4a3f2e now'),
    or '' where it was made by the same."""
    try:
        recorded: Any = read_json(path).get("environment", {}).get("plugins", {})
    except (OSError, UnreadableFile, AttributeError):
        return ""
    recorded = recorded if isinstance(recorded, dict) else {}
    now = used_plugins(config)
    changes = []
    for role in ROLES:
        old, new = recorded.get(role), now.get(role)
        old_code = old.get("fingerprint") if isinstance(old, dict) else None
        new_code = new["fingerprint"] if new else None
        if old_code != new_code:
            name = (new or old or {}).get("name", getattr(config, role))
            changes.append(f"{role} {name}: {_code(old_code)} then, {_code(new_code)} now")
    return "; ".join(changes)


def _code(fingerprint: Any) -> str:
    return f"code {fingerprint}" if isinstance(fingerprint, str) else "almabench's own code"


def mark_changed(cells: list[CellFile]) -> list[CellFile]:
    """The cells with `changed` set on the finished ones made by other plugin code (plugin_code_change)."""
    return [dataclasses.replace(c, changed=plugin_code_change(c.path, c.config)) if c.state == "done" else c
            for c in cells]


def move_replaced(cell: CellFile) -> Path:
    """Rename a changed cell's result to <name>.replaced (.replaced.1, ...) before it runs again."""

    return move_aside(cell.path, "replaced")


def changed_lines(cells: list[CellFile], rerun: bool) -> list[str]:
    """What run says of the changed cells: one line each, and what happens to them."""
    changed = [c for c in cells if c.changed]
    if not changed:
        return []
    what = ("run again (--rerun-changed; the old files are moved aside to <name>.replaced)" if rerun else
            "kept as they are; --rerun-changed runs them again")
    return [f"warning: {len(changed)} finished cell(s) were made by other plugin code than the code installed now, "
            f"{what}:", *(f"  {c.path.name}: {c.changed}" for c in changed)]


def installed_code_changes(plugins: Any) -> str:
    """What the report says of a cell whose recorded plugins (environment.plugins) differ from the plugin code this
    process has registered under the same names (installed packages' entry points, or --plugin files imported
    here): as plugin_code_change, or '' where they agree or the plugin is not registered here."""

    if not isinstance(plugins, dict):
        return ""
    changes = []
    for role, registry in (("method", METHODS), ("arch", ARCHS), ("pruner", PRUNERS), ("dataset", DATASETS)):
        entry = plugins.get(role)
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        name = entry["name"]
        origin = registry.origin(name) if name in registry else None
        if origin is None:
            continue
        now = source_fingerprint(origin.module)
        if entry.get("fingerprint") != now:
            changes.append(f"{role} {name}: {_code(entry.get('fingerprint'))} then, {_code(now)} now")
    return "; ".join(changes)
