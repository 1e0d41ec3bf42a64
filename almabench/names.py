"""How names the user chose (file and folder paths, dataset names) are shown in messages and tables.

A message is one line: a file name with a newline or another character that does not print (a tab, an escape,
a zero-width space) would split it or hide what it names, so such a name is shown quoted, with those characters
escaped as Python writes them. Names that print are shown as they are.
"""

from __future__ import annotations

import os


def quoted(name: str | os.PathLike[str]) -> str:
    """The name as is where every character prints, else its Python repr ('a\\nb.png'): one line, exact."""
    text = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    return text if text.isprintable() else repr(text)


def one_line(message: str) -> str:
    """A message with every character that does not print escaped: the last guard of the one-line rule, for
    names that reached a message without quoted()."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
