"""How names the user chose (file and folder paths, dataset names) are shown in messages and tables.

A message is one line: a file name with a newline or another character that does not print (a tab, an escape,
a zero-width space) would split it or hide what it names, so such a name is shown quoted, with those characters
escaped as Python writes them. Names that print are shown as they are. Two names that render alike (é composed
or decomposed) are told apart where they are listed side by side (labels_apart).
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping


def shown(value: object) -> str:
    """A value as a one-line error message shows it: JSON (repr for floats), cut to 40 characters."""
    import json

    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def quoted(name: str | os.PathLike[str]) -> str:
    """The name as is where every character prints, else its Python repr ('a\\nb.png'): one line, exact."""
    text = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    return text if text.isprintable() else repr(text)


def one_line(message: str) -> str:
    """A message with every character that does not print escaped: the last guard of the one-line rule, for
    names that reached a message without quoted()."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def renders_as(name: str) -> str:
    """What a name looks like: its composed (NFC) form without the characters that do not print, so that café
    written with é and with e + a combining accent, or with a zero-width space, look the same."""
    return "".join(c for c in unicodedata.normalize("NFC", name) if c.isprintable())


def labels_apart(names: Iterable[str], fingerprints: Mapping[str, str] | None = None) -> dict[str, str]:
    """name -> how a table or title shows it: the name itself, unless another of the names renders alike; then
    with what tells them apart: its code points escaped ('cafe\\u0301.npz') and, where `fingerprints` has one for
    it, the data fingerprint (the same data under both names reads as the same fingerprint)."""
    names = list(dict.fromkeys(names))
    looks = Counter(renders_as(n) for n in names)
    labels = {}
    for name in names:
        if looks[renders_as(name)] == 1:
            labels[name] = name
            continue
        data = (fingerprints or {}).get(name)
        escaped = name.encode("ascii", "backslashreplace").decode()
        labels[name] = f"{name} ({escaped}" + (f", data {data})" if data else ")")
    return labels


def columns(text: str) -> int:
    """Terminal columns the text takes: none for combining marks and characters that do not print, two for wide
    East Asian characters, one for the others; so that tables stay aligned whatever script their names are in."""
    def width(c: str) -> int:
        if unicodedata.combining(c) or not c.isprintable():
            return 0
        return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1

    return sum(width(c) for c in text)


def pad(text: str, width: int) -> str:
    """text followed by the spaces that make it `width` columns wide (columns())."""
    return text + " " * max(0, width - columns(text))


def cut_bytes(text: str, limit: int) -> str:
    """text if its UTF-8 form fits in `limit` bytes, else its longest head that does (never half a character)
    followed by '-' and six hex digits of its sha1, so that two long names cut alike still differ. A file name
    holds 255 bytes, not characters: 100 CJK characters are 300 bytes."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    head = raw[:max(0, limit - 7)].decode(errors="ignore")
    return f"{head}-{hashlib.sha1(raw).hexdigest()[:6]}"
