"""The paper's published figures (SPEC.md, "the paper's headline numbers") and the setting they belong to.

They are shown beside the measured deltas only for a block whose cells all match the setting, so a reader can
compare like with like; they are never used in any computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

# Preferred display order; methods not listed follow alphabetically.
METHOD_ORDER: tuple[str, ...] = ("dense", "osp", "app", "app-released")


def base_method(method: str) -> str:
    """The registered method of a report label: 'rigl (erk-dense-first)' -> 'rigl' (blocks.scope_in_method)."""
    return method.split(" (", 1)[0]


def is_app(method: str) -> bool:
    """APP and its variants (the paper version, the released-code reproduction, either at another scope)."""
    base = base_method(method)
    return base == "app" or base.startswith("app-")


def method_order(methods: list[str] | pd.Series) -> list[str]:
    """Methods in display order: the paper's ones first, then the rest alphabetically."""
    present = set(methods)
    return [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))


def comparisons(methods: list[str] | pd.Series, references: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(APP variant, baseline) pairs of a block: each APP variant against every method that is not APP
    (dense, osp and any baseline added later), then against the APP variants after it (app - app-released
    once, not also its mirror), all in display order.

    references (`report --reference`) replace the APP variants as the left side: each reference the block holds
    (a label as the tables write it, or a registered name, which stands for every label of that method) against
    every other method, a pair of two references once."""
    order = method_order(methods)
    if references:
        refs = list(dict.fromkeys(m for r in references for m in order if m == r or base_method(m) == r))
        return [(ref, other) for i, ref in enumerate(refs) for other in order
                if other != ref and other not in refs[:i]]
    apps = [m for m in order if is_app(m)]
    others = [m for m in order if not is_app(m)]
    return [(app, base) for i, app in enumerate(apps) for base in [*others, *apps[i + 1:]]]


@dataclass(frozen=True)
class Headline:
    """A published comparison: the config values it was measured at and its deltas by (baseline, metric)."""

    source: str
    setting: dict[str, object]
    deltas: dict[tuple[str, str], float]

    def matches(self, cells: pd.DataFrame) -> bool:
        """True if every cell of a block was run at this setting."""
        return not cells.empty and all(
            key in cells.columns and (cells[key] == value).all() for key, value in self.setting.items()
        )


HEADLINES: tuple[Headline, ...] = (
    Headline(
        source="APP paper (Misra et al. 2022), CIFAR-100, ResNet-50, T = 8",
        setting={"dataset": "cifar100", "arch": "resnet50", "megabatches": 8, "tau": 4.5, "pruner": "snip"},
        deltas={
            ("dense", "final_test_accuracy"): 17.97, ("osp", "final_test_accuracy"): 11.12,
            ("dense", "cer"): -9927.0, ("osp", "cer"): -5533.0,
            ("dense", "final_gap"): -20.49, ("osp", "final_gap"): -14.79,
        },
    ),
)


def headline_for(cells: pd.DataFrame) -> Headline | None:
    """The published headline whose setting every cell of the block matches, if any."""
    return next((h for h in HEADLINES if h.matches(cells)), None)
