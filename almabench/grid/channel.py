"""Messages from the processes that run cells to the process that shows the grid's progress.

A cell in a loky worker, a Dask worker or a Ray worker on this machine calls a Sender (picklable: an AF_UNIX
socket address in a private temp folder and a random key) for each event; the parent's Receiver hands each
message to its handler on a thread of its own. A cell that cannot reach the parent (another machine, or a
run that has ended) carries on without: its progress is lost, never its work.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Sender:
    """Sends one message per call to the Receiver at `address` (one short connection each)."""

    address: str
    authkey: bytes

    def __call__(self, message: Any) -> None:
        try:
            with Client(self.address, family="AF_UNIX", authkey=self.authkey) as conn:
                conn.send(message)
        # no parent to hear it: a cell's progress is not its result
        except (OSError, EOFError, ValueError, AuthenticationError):
            pass


class Receiver:
    """Listens while the grid runs; `handle` gets every message, in the order the connections arrive."""

    def __init__(self, handle: Callable[[Any], None]) -> None:
        self.handle = handle
        self.folder = Path(tempfile.mkdtemp(prefix="almabench-events."))  # 0700: only this user connects
        self.listener = Listener(str(self.folder / "socket"), family="AF_UNIX", authkey=os.urandom(32))
        self.sender = Sender(str(self.listener.address), self.listener._authkey)  # type: ignore[attr-defined]  # noqa: SLF001
        self.thread = threading.Thread(target=self._serve, name="almabench-events", daemon=True)

    def __enter__(self) -> Sender:
        self.thread.start()
        return self.sender

    def __exit__(self, *exc: object) -> None:
        self.sender(None)  # wakes the accept() below: closing a listening socket would not
        self.thread.join(timeout=10)
        self.listener.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _serve(self) -> None:
        while True:
            try:
                with self.listener.accept() as conn:
                    message = conn.recv()
            except (OSError, EOFError, AuthenticationError):
                continue  # a client that died mid-message, or failed the key check
            if message is None:
                return
            try:
                self.handle(message)
            except Exception:  # noqa: BLE001 - a display bug must not stall the workers that send
                traceback.print_exc(file=sys.stderr)
