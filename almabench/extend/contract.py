"""The contract that makes a method's numbers comparable with the others', checked on a tiny stream.

`almabench check-method NAME` and `check_method(NAME)` (for a method author's own pytest file) run the method on
the embedded digits (T = 3, 1 epoch, 600 images, 1 torch thread: a few seconds) and check, with the numbers:

- density: every recorded density (counted from the weights) is the density the method declares for that
  megabatch (Method.target_density) within 0.005; a pruning method that declares none is told so;
- masks: pruned weights are exactly zero after every SGD step and in every megabatch's kept checkpoint;
- pairing: at the same seed the method trains on dense's data indices with dense's batch order and augmentation
  draws, and starts from dense's initial weights (its first before_step may zero weights, not change them);
  a method that departs on purpose says why in Method.departs, and the check reports it instead of failing
  (so may a method whose recorded density departs from its declared one on purpose, as app-released's does);
- resume: a run killed after megabatch 1 and resumed from its checkpoint gives the same step records;
- record: the result is JSON (finite numbers) that validate.validate_result accepts, and the method's extra step
  keys do not shadow the harness's own;
- determinism: two runs give the same step records and bit-identical weights, batch-norm statistics and masks
  after every megabatch, though each run's hooks are entered with torch's, numpy's and Python's global random
  state seeded differently: a draw from anything but the cell's own generators (ctx.generator, the training
  generator) shows, however small the noise.

Timings (keys ending in `seconds`, images_per_second) are left out of every comparison. The method runs wrapped
in a subclass that watches its hooks (it adds an after_sgd_step hook, which changes no number: the masks it
restores at the kept checkpoint are those a method without one keeps).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import random
import signal
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from almabench.cell.config import RunConfig, RunOptions
from almabench.cell.run import run_cell
from almabench.cell.sparsity import Masks
from almabench.cell.train import CellState, SGDStep
from almabench.errors import AlmabenchError
from almabench.extend.plugins import load_plugins
from almabench.grid.specs import check_grid, for_method
from almabench.methods import METHODS, Method, StepContext
from almabench.results.validate import validate_result

TOLERANCE = 0.005  # |recorded − declared density|
TIME_LIMIT = 600.0  # seconds for the whole check: the built-ins take 5-10 s on 2 cores
# how a method draws random numbers that repeat: what the determinism check's failure tells its author
SEEDED = ("draw every random number from ctx.generator in before_step (e.g. torch.randn(w.shape, "
          "generator=ctx.generator)) or cell.method_generator in after_sgd_step, never from torch's, numpy's or "
          "Python's global random state or an unseeded generator (np.random.default_rng(), random.Random())")
CHECKS = ("density", "masks", "pairing", "resume", "record", "determinism")


def contract_config(method: str, seed: int = 0) -> RunConfig:
    """The tiny cell the contract is checked on."""
    return RunConfig(method=method, dataset="digits", arch="convnet", megabatches=3, epochs=1, seed=seed,
                     stream_images=600)


@dataclass(frozen=True)
class Check:
    name: str  # one of CHECKS
    status: str  # pass, fail or note (nothing to check, or a departure the method declares)
    detail: str  # what was measured, with the numbers

    @property
    def ok(self) -> bool:
        return self.status != "fail"


@dataclass(frozen=True)
class ContractReport:
    method: str
    origin: str
    config: RunConfig
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def get(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def lines(self) -> list[str]:
        c = self.config
        head = (f"check-method {self.method} ({self.origin}): {c.dataset}, {c.arch}, T = {c.megabatches}, "
                f"{c.epochs} epoch, {c.stream_images} images, seed {c.seed}, 1 torch thread")
        body = [f"  {check.status:5} {check.name:12} {check.detail}" for check in self.checks]
        failed = [check.name for check in self.checks if not check.ok]
        tail = (f"{self.method} keeps the contract ({len(self.checks)} checks)" if not failed else
                f"{self.method} breaks the contract: {', '.join(failed)} ({len(failed)} of {len(self.checks)} checks)")
        return [head, *body, tail]


@dataclass
class Probe:
    """What the watching subclass saw during one run."""

    initial: str = ""  # sha256 of the model's state when the first before_step is called
    changed_at_start: tuple[int, float] = (0, 0.0)  # (values, largest |change|) the first before_step altered
    data: list[str] = field(default_factory=list)  # per megabatch: the step's indices after before_step
    generators: list[str] = field(default_factory=list)  # per megabatch: the training generator after training
    sgd_steps: int = 0
    off_mask_sgd: tuple[int, int, float] = (0, 0, 0.0)  # (SGD steps, weights, largest |w|) off the mask
    off_mask_kept: tuple[int, int, float] = (0, 0, 0.0)  # (megabatches, weights, largest |w|) off the mask
    extra_keys: set[str] = field(default_factory=set)
    states: list[str] = field(default_factory=list)  # per megabatch: weights, buffers and masks of the kept network
    masks: Masks | None = None
    model: torch.nn.Module | None = None
    cell: CellState | None = None
    global_seed: int = 0  # the global random state each hook of this run is entered with (seeded by step)


def _digest(tensors: list[Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def _off_mask(masks: Masks) -> tuple[int, float]:
    """(number, largest |w|) of pruned weights that are not zero."""
    count, worst = 0, 0.0
    for name, w in masks.params.items():
        off = w[~masks.masks[name]]
        count += int(torch.count_nonzero(off))
        worst = max(worst, float(off.abs().max()) if off.numel() else 0.0)
    return count, worst


def _add(seen: tuple[int, int, float], found: tuple[int, float]) -> tuple[int, int, float]:
    return (seen[0] + (found[0] > 0), seen[1] + found[0], max(seen[2], found[1]))


def watched(cls: type[Method]) -> type[Method]:
    """cls with its hooks watched (Probe on each instance as .probe); what it computes is cls's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls.__init__(self, *args, **kwargs)
        self.probe = Probe()

    def before_step(self, ctx: StepContext) -> None:
        probe: Probe = self.probe
        probe.masks, probe.model = ctx.masks, ctx.model
        _seed_global_state(probe.global_seed, ctx.step)
        if ctx.step == 1:
            before = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
            probe.initial = _digest(list(before.values()))
        cls.before_step(self, ctx)
        if ctx.step == 1:
            probe.changed_at_start = _changed(before, ctx.model.state_dict(), ctx.masks)
        probe.data.append(_digest([ctx.step_data.train, ctx.step_data.val]))

    def after_sgd_step(self, cell: CellState, sgd: SGDStep) -> None:
        cls.after_sgd_step(self, cell, sgd)
        probe: Probe = self.probe
        probe.cell, probe.masks = cell, cell.masks
        probe.sgd_steps += 1
        probe.off_mask_sgd = _add(probe.off_mask_sgd, _off_mask(cell.masks))

    def step_record(self) -> dict[str, Any]:  # called once the megabatch's kept checkpoint is loaded
        record = cls.step_record(self)
        probe: Probe = self.probe
        probe.extra_keys |= set(record)
        if probe.masks is not None:
            probe.off_mask_kept = _add(probe.off_mask_kept, _off_mask(probe.masks))
        if probe.cell is not None:
            probe.generators.append(_digest([probe.cell.train_generator.get_state()]))
        if probe.model is not None and probe.masks is not None:
            masks = probe.masks.masks
            probe.states.append(_digest([*probe.model.state_dict().values(), *(masks[k] for k in sorted(masks))]))
        return record

    hooks = {"__init__": __init__, "before_step": before_step, "after_sgd_step": after_sgd_step,
             "step_record": step_record, "__module__": cls.__module__, "__qualname__": cls.__qualname__}
    return type(cls.__name__, (cls,), hooks)


def _seed_global_state(seed: int, step: int) -> None:
    """Seed torch's, numpy's and Python's global random state from (seed, step): runs given different seeds enter
    every megabatch with different global states, so a method that draws from them repeats nothing."""
    value = seed * 1_000_003 + step
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)


@torch.no_grad()
def _changed(before: dict[str, Tensor], after: dict[str, Tensor], masks: Masks) -> tuple[int, float]:
    """(values, largest |change|) where the model's state differs, pruned weights aside (pruning zeroes them)."""
    count, worst = 0, 0.0
    for key, old in before.items():
        new = after[key]
        if not old.is_floating_point():
            count += int((old != new).sum())
            continue
        diff = (new - old).abs()
        if key in masks.masks:
            diff = diff[masks.masks[key]]
        count += int(torch.count_nonzero(diff))
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
    return count, worst


class _Killed(Exception):
    """Raised by the progress callback to stop a run after megabatch 1, as a kill would."""


@dataclass(frozen=True)
class _Run:
    result: dict[str, Any]
    probe: Probe


def _run(config: RunConfig, options: RunOptions, checkpoint: Path | None = None, kill_after: int = 0,
         global_seed: int = 0) -> _Run:

    method = watched(METHODS.get(config.method))()
    method.configure(dict(config.settings))
    method.probe.global_seed = global_seed  # type: ignore[attr-defined]

    def progress(step: dict[str, Any]) -> None:
        if kill_after and step["step"] == kill_after:
            raise _Killed

    result = run_cell(config, options, progress=progress, checkpoint=checkpoint, method=method)
    return _Run(result, method.probe)  # type: ignore[attr-defined]


def comparable(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Step records as JSON holds them, timings left out."""
    plain = json.loads(json.dumps(steps, default=str))
    return [{k: v for k, v in s.items() if not (k.endswith("seconds") or k == "images_per_second")} for s in plain]


def _first_difference(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    for s, t in zip(a, b):
        keys = sorted(k for k in set(s) | set(t) if s.get(k) != t.get(k))
        if keys:
            return f"megabatch {s.get('step')} differs in {', '.join(keys)} ({keys[0]}: {s.get(keys[0])!r} vs " \
                   f"{t.get(keys[0])!r})"
    return f"{len(a)} vs {len(b)} step records"


@functools.lru_cache(maxsize=2)
def _dense(config: RunConfig, options: RunOptions) -> _Run:
    """The dense run every method is paired with (one per process and config)."""
    return _run(config, options)


def check_method(name: str, plugins: tuple[str, ...] | list[str] = (), seed: int = 0,
                 timeout: float = TIME_LIMIT) -> ContractReport:
    """Run the contract's checks on method `name` (after importing `plugins`: --plugin files or modules); a check
    that has not finished after `timeout` seconds (a hook that never returns) stops with one AlmabenchError line."""
    with _time_limit(timeout, f"check-method {name}: not finished after {timeout:g} s (the built-ins take seconds): "
                              f"a hook of the method that never returns? (--timeout sets the limit)"):
        return _check_method(name, plugins, seed)


@contextlib.contextmanager
def _time_limit(seconds: float, message: str) -> Iterator[None]:
    """Raise AlmabenchError(message) in the main thread once `seconds` have passed (SIGALRM: POSIX, main thread
    only; elsewhere no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise AlmabenchError(message)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _check_method(name: str, plugins: tuple[str, ...] | list[str], seed: int) -> ContractReport:

    load_plugins(tuple(plugins))
    cls = METHODS.get(name)
    options = RunOptions(device="cpu", threads=1)
    config = check_grid([for_method(contract_config(name, seed))], options)[0]
    dense_config = check_grid([for_method(contract_config("dense", seed))], options)[0]
    threads = torch.get_num_threads()
    saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        first = _run(config, options, global_seed=1)
        second = _run(config, options, global_seed=2)  # other global random states: see determinism_check
        with tempfile.TemporaryDirectory(prefix="almabench-check-") as folder:
            checkpoint = Path(folder) / "cell.pt"
            try:
                _run(config, options, checkpoint, kill_after=1, global_seed=1)
                raise AlmabenchError("check-method: the run was not stopped after megabatch 1")
            except _Killed:
                pass
            resumed = _run(config, options, checkpoint, global_seed=1)
        dense = first if name == "dense" else _dense(dense_config, options)
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])
    checks = (
        density_check(cls, first.result["steps"]),
        masks_check(first.probe),
        pairing_check(cls, first.probe, dense.probe),
        resume_check(first.result["steps"], resumed.result["steps"], second.result["steps"]),
        record_check(first.result, dense.result, first.probe.extra_keys),
        determinism_check(first, second),
    )
    return ContractReport(name, METHODS.describe_origin(name), config, checks)


def density_check(cls: type[Method], steps: list[dict[str, Any]]) -> Check:
    gaps = [abs(s["density"] - s["target_density"]) for s in steps]
    recorded = ", ".join(f"{s['density']:.4f}" for s in steps)
    if cls.prunes and cls.target_density is Method.target_density:
        return Check("density", "note", f"declares no density (target_density is not overridden): nothing to "
                                        f"compare; recorded densities {recorded}")
    worst = max(range(len(steps)), key=gaps.__getitem__)
    if gaps[worst] > TOLERANCE:
        s = steps[worst]
        found = (f"megabatch {s['step']} records density {s['density']:.4f} but the method declares "
                 f"{s['target_density']:.4f} (|Δ| = {gaps[worst]:.4f} > {TOLERANCE})")
        if "density" in cls.departs:
            return Check("density", "note", f"departs on purpose ({cls.departs['density']}): {found}")
        return Check("density", "fail", found)
    return Check("density", "pass", f"recorded densities {recorded} equal the declared ones at all {len(steps)} "
                                    f"megabatches (largest |Δ| {gaps[worst]:.4f} ≤ {TOLERANCE})")


def masks_check(probe: Probe) -> Check:
    sgd_steps, sgd_weights, sgd_worst = probe.off_mask_sgd
    kept_steps, kept_weights, kept_worst = probe.off_mask_kept
    if sgd_steps or kept_steps:
        where = []
        if sgd_steps:
            where.append(f"after {sgd_steps} of {probe.sgd_steps} SGD steps ({sgd_weights} weights in all, largest "
                         f"|w| {sgd_worst:.3g})")
        if kept_steps:
            where.append(f"in {kept_steps} kept checkpoint(s) ({kept_weights} weights, largest |w| {kept_worst:.3g})")
        return Check("masks", "fail", f"pruned weights are not zero {' and '.join(where)}")
    return Check("masks", "pass", f"pruned weights are exactly zero after all {probe.sgd_steps} SGD steps and in "
                                  f"the {len(probe.generators)} kept checkpoints")


def pairing_check(cls: type[Method], probe: Probe, dense: Probe) -> Check:
    problems = []
    if probe.initial != dense.initial:
        problems.append(f"its initial weights differ from dense's ({probe.initial} vs {dense.initial})")
    changed, worst = probe.changed_at_start
    if changed:
        problems.append(f"its first before_step changes {changed} surviving weight(s) or buffer(s) of the initial "
                        f"network (largest change {worst:.3g}): a re-initialisation")
    data = [t for t, (a, b) in enumerate(zip(probe.data, dense.data), start=1) if a != b]
    if data:
        problems.append(f"it trains on other indices than dense at megabatch(es) {', '.join(map(str, data))}")
    batches = [t for t, (a, b) in enumerate(zip(probe.generators, dense.generators), start=1) if a != b]
    if batches:
        problems.append(f"its batch order and augmentation draw from the training generator differ from dense's "
                        f"from megabatch {batches[0]} on (the method draws from cell.train_generator or reseeds)")
    if problems and "pairing" in cls.departs:
        return Check("pairing", "note", f"departs on purpose ({cls.departs['pairing']}): {'; '.join(problems)}")
    if problems:
        return Check("pairing", "fail", "; ".join(problems))
    return Check("pairing", "pass", f"dense's initial weights ({probe.initial}), data indices and batch order at all "
                                    f"{len(probe.data)} megabatches")


def resume_check(whole: list[dict[str, Any]], resumed: list[dict[str, Any]], again: list[dict[str, Any]]) -> Check:
    a, b = comparable(whole), comparable(resumed)
    if a != b:
        why = ("two uninterrupted runs differ too: see determinism" if comparable(again) != a else
               "keep what the method carries between megabatches in state_dict / load_state_dict")
        return Check("resume", "fail", f"killed after megabatch 1 and resumed, the run differs from an "
                                       f"uninterrupted one: {_first_difference(a, b)} ({why})")
    return Check("resume", "pass", f"killed after megabatch 1 and resumed: {len(a)} step records identical to an "
                                   f"uninterrupted run's ({len(a[0])} keys each, timings aside)")


def record_check(result: dict[str, Any], dense: dict[str, Any], method_keys: set[str]) -> Check:

    harness = set(dense["steps"][0])  # dense adds no key of its own
    extra = set().union(*(set(s) for s in result["steps"])) - harness
    shadowed = sorted(harness & method_keys)
    try:
        text = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return Check("record", "fail", f"the result is not JSON: {exc}")
    why = validate_result(json.loads(text))
    if why is not None:
        return Check("record", "fail", f"validate.validate_result refuses the result: {why}")
    if shadowed:
        return Check("record", "fail", f"step_record's key(s) {', '.join(shadowed)} shadow the harness's own; "
                                       f"rename them")
    return Check("record", "pass", f"valid JSON that validate.validate_result accepts; {len(extra)} extra step key(s)"
                                   f"{' (' + ', '.join(sorted(extra)) + ')' if extra else ''}, none shadowing the "
                                   f"harness's {len(harness)}")


def determinism_check(first: _Run, second: _Run) -> Check:
    """Step records, then the kept network and masks bit for bit, of two runs entered with other global states."""
    a, b = comparable(first.result["steps"]), comparable(second.result["steps"])
    if a != b:
        return Check("determinism", "fail", f"two runs at the same seed differ: {_first_difference(a, b)}; "
                                            f"{SEEDED}")
    states = zip(first.probe.states, second.probe.states)
    apart = [t for t, (x, y) in enumerate(states, start=1) if x != y]
    if apart:
        return Check("determinism", "fail", f"two runs at the same seed give the same step records but other "
                                            f"weights, batch-norm statistics or masks after megabatch {apart[0]} "
                                            f"(compared bit for bit; the runs entered each hook with other global "
                                            f"random states); {SEEDED}")
    return Check("determinism", "pass", f"two runs give identical step records and bit-identical weights and masks "
                                        f"after all {len(a)} megabatches, entered with other global random states")
