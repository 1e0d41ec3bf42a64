"""One registry shape for methods, datasets, architectures, pruners and export formats: a dict filled by a
decorator, and, for the kinds a user may bring (`entry_points`), by installed packages' entry points and
`--plugin` files (almabench.extend.plugins) the same way in every process.

Each entry remembers where it came from (`origin`: None for almabench's own), so that `almabench list` can say
it and a cell can record the plugin code it ran.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from almabench.errors import AlmabenchError

T = TypeVar("T")


@dataclass(frozen=True)
class Origin:
    """Where a plugin entry came from: an installed package's entry point, a file or a module (`--plugin`)."""

    kind: str  # "entry point", "file" or "module"
    where: str  # the entry point ("name = module:attr"), the file's absolute path or the module's name
    package: str = ""  # the distribution (entry points) or ""
    version: str = ""
    module: str = ""  # the module the entry's code lives in (its source is fingerprinted)

    def describe(self) -> str:
        if self.kind == "entry point":
            return f"entry point {self.where} of package {self.package} {self.version}"
        return f"{self.kind} {self.where}"


_LOADING: list[Origin] = []  # the plugin being imported (innermost last): its registrations get its origin
IMPORTED: dict[tuple[str, str], Origin] = {}  # every plugin import this process began: (kind, where) -> origin


def entry_points_of(group: str) -> Iterator[tuple[str, Origin, Callable[[], Any]]]:
    """(name, origin, load) of every installed entry point of the group, in a fixed order. Here, beside the
    registries they fill, so that discovery needs nothing above the foundation (no import circle)."""
    for ep in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
        dist = ep.dist
        origin = Origin("entry point", f"{ep.name} = {ep.value}", dist.name if dist else "?",
                        dist.version if dist else "?", ep.module)
        yield ep.name, origin, functools.partial(_recorded, origin, ep.load)


def _recorded(origin: Origin, load: Callable[[], Any]) -> Any:
    """load(), remembered as imported first: code that ran, even where its import then failed, is named."""
    IMPORTED[(origin.kind, origin.where)] = origin
    return load()


@contextlib.contextmanager
def loading(origin: Origin) -> Iterator[None]:
    """Registrations made inside (by a plugin's decorators at import) are recorded as coming from `origin`."""
    _LOADING.append(origin)
    try:
        yield
    finally:
        _LOADING.pop()


def callable_entry(entry: object) -> str | None:
    """An entry point's check for registries of functions (pruners, architectures, datasets)."""
    return None if callable(entry) else "callable"


class Registry(Generic[T]):
    """Named entries of one kind; unknown names are answered with the list of known ones.

    entry_points: the importlib.metadata group whose entry points fill it on first use (almabench.extend.plugins);
    check: says why an entry point's object is not a valid entry (None when it is).
    """

    def __init__(self, kind: str, entry_points: str = "", check: Callable[[object], str | None] | None = None) -> None:
        self.kind = kind
        self.entry_points = entry_points
        self.check = check
        self._entries: dict[str, T] = {}
        self._origins: dict[str, Origin] = {}
        self._broken: dict[str, str] = {}  # name -> why its plugin could not be registered (said when it is used)
        self._discovered = not entry_points

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            self.add(name, entry, _LOADING[-1] if _LOADING else None)
            return entry

        return add

    def add(self, name: str, entry: T, origin: Origin | None) -> None:
        """Register entry under name; a name taken by another entry is an error naming both origins."""
        if self._entries.get(name) is entry:
            return  # a plugin whose module both decorates and is named by an entry point
        if name in self._entries:
            if origin is None:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            raise AlmabenchError(self.collision(name, origin))
        self._entries[name] = entry
        if origin is not None:
            self._origins[name] = origin

    def collision(self, name: str, origin: Origin) -> str:
        return (f"{origin.describe()}: {self.kind} {name!r} is already registered by {self.describe_origin(name)}; "
                f"rename it (names taken: {', '.join(self.names())})")

    def discover(self) -> None:
        """Fill the registry from its entry-point group, once per process; a broken entry point is one warning
        line here and an error only where it is used."""
        if self._discovered:
            return
        self._discovered = True
        for name, origin, load in entry_points_of(self.entry_points):
            if name in self._entries and name not in self._origins:  # almabench's own: it keeps the name
                uninstall = f"pip uninstall {origin.package}" if origin.package else "uninstall it"
                warnings.warn(f"{origin.describe()}: {self.kind} {name!r} is almabench's own, which runs; the "
                              f"package's entry is ignored (rename its entry point to use it, or {uninstall})",
                              stacklevel=2)
                continue
            try:
                entry = load()
                why = self.check(entry) if self.check is not None else None
                if why is not None:
                    raise AlmabenchError(f"{origin.describe()}: names {entry!r}, which is not {why}")
                self.add(name, entry, origin)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - an installed plugin's import may raise anything
                message = str(exc) if isinstance(exc, AlmabenchError) else (
                    f"{origin.describe()} failed to import: {type(exc).__name__}: {exc}")
                self._broken.setdefault(name, message)
                warnings.warn(f"{message} (ignored unless {self.kind} {name!r} is used)", stacklevel=2)

    def get(self, name: str) -> T:
        self.discover()
        if name in self._broken:
            raise AlmabenchError(self._broken[name])
        try:
            return self._entries[name]
        except KeyError:
            raise AlmabenchError(self.unknown(name)) from None

    def origin(self, name: str) -> Origin | None:
        """Where the entry came from; None: almabench itself."""
        self.discover()
        return self._origins.get(name)

    def describe_origin(self, name: str) -> str:
        origin = self.origin(name)
        return "almabench" if origin is None else origin.describe()

    def remove_plugins(self) -> None:
        """Forget every plugin entry (the tests load several plugins of one name, one after the other)."""
        for name in list(self._origins):
            del self._entries[name]
        self._origins.clear()
        self._broken.clear()
        self._discovered = not self.entry_points

    def unknown(self, name: str) -> str:
        return f"unknown {self.kind} {name!r}; choose from: {', '.join(self.names())}"

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._entries and name not in self._broken

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
