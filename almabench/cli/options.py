"""What several commands share: list options (--methods a,b), --set KEY=VALUE, and the plugins a command loads."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import click

from almabench.errors import AlmabenchError
from almabench.names import quoted


def split_option(value: str | None, option: str, kind: type = str) -> tuple[Any, ...] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise AlmabenchError(f"{option} needs at least one value")
    try:
        return tuple(kind(v) for v in items)
    except ValueError:
        raise AlmabenchError(f"{option} expects comma-separated {kind.__name__} values, got {value!r}") from None


def parse_set(pairs: tuple[str, ...]) -> dict[str, Any]:
    """--set key=value, the value read as TOML (so 0.1, true, [20, 40] work) or else as a plain string."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise AlmabenchError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw
        except RecursionError:  # tomllib recurses once per nested list
            raise AlmabenchError(f"--set {key.strip()}: nested too deeply") from None
    return out


def list_option(*names: str, help: str) -> Any:
    return click.option(*names, default=None, metavar="A,B,...", help=help)


plugin_option = click.option(
    "--plugin", "plugins", multiple=True, metavar="FILE.py|MODULE",
    help="Import a method (or pruner, architecture, dataset) from a file or module that is not an installed "
         "package; every worker imports it too. Repeatable.")


def load_plugins_for(plugins: tuple[str, ...], spec_plugins: tuple[str, ...] = (), source: str = "") -> tuple[str, ...]:
    """Import the spec's and the command line's --plugin values here; returns them as every process imports them
    (files by absolute path). A spec's plugins are code that runs, though a spec reads as settings: each is named
    on stderr before it is imported (`--dry-run` and `status` import them too, to name the cells)."""
    from almabench.extend.plugins import is_file_spec, is_loaded, load_plugins
    from almabench.grid.specs import plugin_path

    for plugin in plugins:
        if is_file_spec(plugin) and not Path(plugin).expanduser().is_file():
            raise AlmabenchError(f"--plugin {plugin}: no such file ({Path(plugin).expanduser().resolve()}); give a "
                                 f".py file that registers a method, or an importable module name")
    for plugin in spec_plugins:
        if not is_loaded(plugin):
            click.echo(f"importing plugin code named by the spec{f' {source}' if source else ''}: {quoted(plugin)}",
                       err=True)
    resolved = tuple(dict.fromkeys((*spec_plugins, *(plugin_path(p, Path.cwd()) for p in plugins))))
    load_plugins(resolved)
    return resolved


