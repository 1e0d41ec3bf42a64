"""--slurm KEY=VALUE and a spec's [slurm] table: the job array's settings, checked before anything is submitted."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from almabench.errors import AlmabenchError

SBATCH_KEYS = ("partition", "time", "account", "qos", "constraint", "mem", "cpus_per_task", "gpus_per_node")


# What each text setting may hold: a value reaches the job script only as the value of its #SBATCH line (submitit
# quotes it with shlex), and a newline would end that line and start another, so every setting is checked here.
_NAME = r"[A-Za-z0-9_.+-]+"


TEXT_PATTERNS = {
    "partition": re.compile(rf"{_NAME}(,{_NAME})*"),
    "account": re.compile(_NAME),
    "qos": re.compile(_NAME),
    "constraint": re.compile(r"[A-Za-z0-9_.,&|*()\[\]:!-]+"),  # features joined by & | , with counts [a*2]
    "mem": re.compile(r"[0-9]+([KMGT]B?)?", re.IGNORECASE),
    "time": re.compile(r"[0-9]+([-:][0-9]+)*|UNLIMITED|INFINITE", re.IGNORECASE),
}


@dataclass(frozen=True)
class SlurmSettings:
    """What each task asks Slurm for (unset: the cluster's default), and how it lives through time limits."""

    partition: str = ""
    time: str = ""  # Slurm's formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
    account: str = ""
    qos: str = ""
    constraint: str = ""
    mem: str = ""  # per node, e.g. 32G
    cpus_per_task: int = 0  # also the torch threads of the cell (unless --threads)
    gpus_per_node: int = 0
    max_timeouts: int = 3  # requeues at the time limit; preemptions requeue without limit
    signal_delay: int = 90  # seconds before the time limit that Slurm warns the task

    @classmethod
    def parse(cls, table: dict[str, Any], pairs: tuple[str, ...] = (), source: str = "") -> SlurmSettings:
        """A spec's [slurm] table, then --slurm KEY=VALUE pairs over it; a bad key or value is one line."""
        given: dict[str, tuple[Any, str]] = {key: (value, f"{source} [slurm]") for key, value in table.items()}
        for key, value in table.items():  # before anything is stripped, parsed or written
            _printable(f"{key}={value}", f"{source} [slurm]")
        for pair in pairs:
            _printable(pair, "--slurm")
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            if not sep:
                raise AlmabenchError(f"--slurm expects KEY=VALUE, got {pair!r}")
            given[key.strip()] = (raw.strip(), "--slurm")
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, (value, where) in given.items():
            if key not in kinds:
                raise AlmabenchError(f"{where}: unknown key {key!r}; valid keys: {', '.join(kinds)}")
            values[key] = _value(key, value, kinds[key] == "int", where)
        return cls(**values)

    def resources(self) -> str:
        """The settings as sbatch options, for --dry-run and the submission line."""
        asked = [f"{k}={getattr(self, k)}" for k in SBATCH_KEYS if getattr(self, k)]
        return ", ".join(asked) if asked else "the cluster's defaults"


def _printable(text: str, where: str) -> None:
    """One line where a setting holds a newline or another character that does not print: it would end its
    #SBATCH line in the job script and start a line of its own (a directive, or a command)."""
    if not text.isprintable():
        raise AlmabenchError(f"{where}: {text!r} holds a newline or control character; a Slurm setting is one "
                             f"plain value")


def _value(key: str, value: Any, integer: bool, where: str) -> Any:
    if not integer:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise AlmabenchError(f"{where}: {key} must be a string, got {value!r}")
        text = str(value)
        if key == "time" and text:
            time_seconds(text)  # its own line for a time Slurm would not read
        if text and not TEXT_PATTERNS[key].fullmatch(text):
            raise AlmabenchError(f"{where}: {key} {text!r} is not a Slurm {key} (letters, digits and {key}'s own "
                                 f"separators only)")
        return text
    try:
        number = value if isinstance(value, int) and not isinstance(value, bool) else int(str(value), 10)
    except ValueError:
        raise AlmabenchError(f"{where}: {key} must be a whole number, got {value!r}") from None
    if number < (1 if key == "signal_delay" else 0):
        raise AlmabenchError(f"{where}: {key} must be at least {1 if key == 'signal_delay' else 0}, got {number}")
    return number


def time_seconds(text: str) -> int | None:
    """Slurm's time format in seconds (None: UNLIMITED / INFINITE, or not set); a bad one is one line."""
    text = text.strip()
    if text.upper() in ("UNLIMITED", "INFINITE", "NOT_SET", "N/A", ""):
        return None
    days, dash, rest = text.partition("-")
    if not dash:
        days, rest = "0", text
    try:
        parts = [int(p) for p in rest.split(":")]
        whole_days = int(days)
    except ValueError:
        raise AlmabenchError(f"time {text!r} is not a Slurm time (minutes, MM:SS, HH:MM:SS or D-HH:MM:SS)") from None
    if dash:  # D-HH, D-HH:MM, D-HH:MM:SS
        parts = parts + [0] * (3 - len(parts))
    elif len(parts) == 1:  # minutes
        parts = [0, parts[0], 0]
    elif len(parts) == 2:  # MM:SS
        parts = [0, *parts]
    if len(parts) != 3 or min(parts) < 0 or whole_days < 0:
        raise AlmabenchError(f"time {text!r} is not a Slurm time (minutes, MM:SS, HH:MM:SS or D-HH:MM:SS)")
    return ((whole_days * 24 + parts[0]) * 60 + parts[1]) * 60 + parts[2]

