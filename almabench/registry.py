"""One registry shape for methods, datasets, architectures and pruners: a dict filled by a decorator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from almabench.errors import AlmabenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; unknown names are answered with the list of known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise AlmabenchError(self.unknown(name)) from None

    def unknown(self, name: str) -> str:
        return f"unknown {self.kind} {name!r}; choose from: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
