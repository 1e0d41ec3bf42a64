"""Blocks: the groups of cells compared side by side, one per (dataset, arch, T, pruner, tau) by default.

A cell that never prunes (dense) does not depend on the pruning keys, so it joins every block that differs from
it only in those keys: the dense baseline run once serves the SNIP block and the magnitude block alike.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd

from almabench.errors import AlmabenchError
from almabench.names import cut_bytes, labels_apart

from .load import CONFIG_KEYS, PRUNING_KEYS, Warn
from .paper import comparisons, method_order

BLOCK_KEYS: tuple[str, ...] = ("dataset", "arch", "megabatches", "pruner", "tau")
SHORT = {"megabatches": "T", "tau": "tau"}
PLAIN = ("dataset", "arch", "pruner", "method")  # values that name themselves
# Not config, but they change the numbers: floating-point reductions run in another order (threads, device)
# or rounding (bf16 vs fp32). Column -> how a warning names it; env_device is compared by type (cuda:0 = cuda:1).
REPEATABILITY_ENV = {"env_torch_threads": "torch threads", "env_device": "device type",
                     "env_precision": "precision"}


def parse_group_by(spec: str | None, columns: Sequence[str]) -> list[str]:
    """Block keys from a comma list; a leading '+' adds to the default keys instead of replacing them."""
    if not spec:
        return list(BLOCK_KEYS)
    extra = spec.startswith("+")
    keys = [k.strip() for k in spec.lstrip("+").split(",") if k.strip()]
    unknown = [k for k in keys if k not in columns]
    if unknown:
        valid = ", ".join(k for k in CONFIG_KEYS if k in columns)
        raise AlmabenchError(f"unknown --group-by key(s) {', '.join(unknown)}; valid keys: {valid}")
    return list(BLOCK_KEYS) + [k for k in keys if k not in BLOCK_KEYS] if extra else list(dict.fromkeys(keys))


# Any setting that changes what a cell computes splits the rows it varies in (two epoch budgets of a scale
# ladder, the paper's and the released harness, ...): a table row averages seeds and nothing else.
# scope is not among them: a cell at another scope than the paper's is its own method (scope_in_method).
# Neither are a method's settings: a cell at other settings is its own method too ('shrink-perturb (shrink=0.2)').
SPLIT_WHEN_VARYING: tuple[str, ...] = tuple(k for k in CONFIG_KEYS if k not in ("method", "seed", "scope", "settings"))
PAPER_SCOPE = "global"  # the paper's (SPEC.md): one threshold over every prunable layer


# Settings a reader must see in every block title once any cell sets them, even where all cells agree: a stream of
# 5,000 images is another experiment than the paper's, whatever the folder holds beside it.
SHOWN_WHEN_SET: tuple[str, ...] = ("stream_images",)


def with_varying_splits(keys: Sequence[str], frame: pd.DataFrame) -> list[str]:
    """The block keys plus every SPLIT_WHEN_VARYING key that takes more than one value in frame, and every
    SHOWN_WHEN_SET key that some cell sets."""
    def split(k: str) -> bool:
        if k not in frame.columns or k in keys:
            return False
        return frame[k].nunique() > 1 or (k in SHOWN_WHEN_SET and frame[k].notna().any())
    return [*keys, *(k for k in SPLIT_WHEN_VARYING if split(k))]


def scope_in_method(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every pruning cell whose scope is not the paper's, and every cell whose method settings are
    not its method's defaults, named as its own method, e.g. 'rigl (erk-dense-first)' or 'shrink-perturb
    (shrink=0.2)': RigL as its authors run it then sits in the same block as APP and RigL at global scope, each
    with its own row and delta. A scope a result does not record (older files) was global."""
    if "scope" not in frame.columns:
        return frame
    other = frame["prunes"] & frame["scope"].notna() & (frame["scope"] != PAPER_SCOPE)
    settings = frame["settings"] if "settings" in frame.columns else pd.Series("", index=frame.index)
    tuned = settings.fillna("").astype(str) != ""
    if not other.any() and not tuned.any():
        return frame
    scope = frame["scope"].astype(str).where(other, "")
    extra = (scope + ", " + settings.fillna("").astype(str)).str.strip(", ")
    return frame.assign(method=frame["method"].where(~(other | tuned), frame["method"] + " (" + extra + ")"))


def assign_blocks(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Rows of non-pruning cells copied into every block they differ from only in pruning keys."""
    free = [k for k in keys if k in PRUNING_KEYS]
    fixed = [k for k in keys if k not in PRUNING_KEYS]
    pruned, unpruned = frame[frame["prunes"]], frame[~frame["prunes"]]
    if not free or pruned.empty or unpruned.empty:
        return frame.reset_index(drop=True)
    combos = pruned[list(keys)].drop_duplicates()
    base = unpruned.drop(columns=free)
    joined = base.merge(combos, on=fixed, how="inner") if fixed else base.merge(combos, how="cross")
    if fixed:
        matched = unpruned.set_index(fixed).index.isin(combos.set_index(fixed).index)
        orphans = unpruned[~matched]
    else:
        orphans = unpruned.iloc[0:0]
    return pd.concat([pruned, joined[frame.columns], orphans], ignore_index=True)


def iter_blocks(frame: pd.DataFrame, keys: Sequence[str]) -> Iterator[tuple[dict[str, object], pd.DataFrame]]:
    """(key values, rows) for each block, in sorted order."""
    for values, rows in frame.groupby(list(keys), sort=True, dropna=False):
        yield dict(zip(keys, values)), rows


def datasets_apart(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its dataset names relabelled where two render alike (café.npz composed and decomposed: two
    datasets, two blocks, one title), with what tells them apart: their escaped code points and data fingerprint
    (almabench.names.labels_apart). Only the report's labels change; the files keep their names."""
    names = list(frame["dataset"].unique())
    prints = frame.groupby("dataset")["data_fingerprint"].unique() if "data_fingerprint" in frame else {}
    labels = labels_apart(names, {n: str(v[0]) for n, v in dict(prints).items() if len(v) == 1})
    if all(labels[n] == n for n in names):
        return frame
    return frame.assign(dataset=frame["dataset"].map(labels))


def shown_value(key: str, value: Any) -> Any:
    """A block key's value as labels and file names show it: unset stream_images (None, or NaN in a column beside
    numbers) is "all" (the whole training set), a count is an integer (5000, not pandas' 5000.0)."""
    if key in SHOWN_WHEN_SET:
        return "all" if pd.isna(value) else int(value)
    return value


def block_label(block: dict[str, Any]) -> str:
    """Human-readable block name, e.g. 'cifar10 / resnet18 / T=8 / snip / tau=4.5'."""
    parts = []
    for key, value in block.items():
        value = shown_value(key, value)
        if key in PLAIN:
            parts.append(str(value))
        else:
            parts.append(f"{SHORT.get(key, key)}={value}")
    return " / ".join(parts)


MAX_SLUG_BYTES = 160  # a figure's file name adds its kind (accuracy_vs_density_), a -2 and .png: under 255 bytes


def block_slug(block: dict[str, object]) -> str:
    """File-name-safe block name, e.g. 'cifar10_resnet18_T8_snip_tau4.5' or '数据.npz_convnet_T8_snip_tau4.5', its
    values written as the block's label writes them (shown_value: stream_imagesall, stream_images5000).

    Letters and digits of any script are kept (\\w is Unicode-aware), so user datasets named in Chinese and
    Japanese do not both become '.npz'. Where anything else is replaced (a '/' of a dataset path, a space),
    two names could still meet, so the slug then ends in a short hash of the full name. A slug longer than
    MAX_SLUG_BYTES in UTF-8 is cut there (names.cut_bytes), as 100 CJK characters would not fit a file name.
    """
    raw = "_".join(f"{SHORT.get(k, '' if k in PLAIN else k)}{shown_value(k, v)}" for k, v in block.items())
    slug = re.sub(r"[^\w.+-]+", "-", raw)
    if slug != raw:
        slug = f"{slug.strip('-')}-{hashlib.sha1(raw.encode()).hexdigest()[:6]}"
    return cut_bytes(slug.strip("-"), MAX_SLUG_BYTES) or "all"


def check_homogeneous(cells: pd.DataFrame, keys: Sequence[str], warn: Warn) -> None:
    """Warn where one table row would average cells whose configs differ in more than the seed."""
    other = [k for k in CONFIG_KEYS if k in cells.columns and k not in keys and k not in ("method", "seed")]
    for (block, method), rows in _by_block_method(cells, keys):
        relevant = other if rows["prunes"].any() else [k for k in other if k not in PRUNING_KEYS]
        varying = [k for k in relevant if rows[k].nunique(dropna=False) > 1]
        if varying:
            detail = "; ".join(f"{k} in {sorted(map(str, rows[k].unique()))}" for k in varying)
            warn(f"{block_label(block)}, {method}: cells differ beyond the seed ({detail}); they are averaged "
                 f"together - add the key(s) to --group-by to separate them")
        dup = rows.groupby("seed").size()
        if (dup > 1).any():
            warn(f"{block_label(block)}, {method}: several cells share seed(s) "
                 f"{', '.join(map(str, dup[dup > 1].index))}; n counts cells, not independent seeds")


def _device_type(device: object) -> object:
    """'cuda:1' -> 'cuda', 'cpu' -> 'cpu'; an unrecorded device stays missing."""
    return device.split(":")[0] if isinstance(device, str) else device


def _show(value: object) -> str:
    """A recorded value as the warning prints it: thread counts read back as floats print as integers."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def check_environment(cells: pd.DataFrame, keys: Sequence[str], warn: Warn) -> None:
    """One warning per table row (block, method) whose cells ran at different torch thread counts, device
    types or precisions: floating-point reductions differ with those, so such cells are not bit-repeatable
    against each other and part of their spread is not the seed's. Unrecorded values (older files) clash
    with nothing."""
    present = [c for c in REPEATABILITY_ENV if c in cells.columns]
    if not present:
        return
    env = cells.assign(env_device=cells["env_device"].map(_device_type)) if "env_device" in present else cells
    for (block, method), rows in _by_block_method(env, keys):
        varying = [c for c in present if rows[c].nunique() > 1]
        if varying:
            detail = "; ".join(f"{REPEATABILITY_ENV[c]} in [{', '.join(sorted(map(_show, rows[c].dropna().unique())))}]"
                               for c in varying)
            warn(f"{block_label(block)}, {method}: averages cells run with different {detail}; floating-point "
                 f"reductions differ with those, so results are only bit-repeatable at the same thread count, "
                 f"device and precision")


def _code_of(row: pd.Series) -> str:
    """A cell's code fingerprint as a warning names it: environment.code, with the git commit it ran at."""
    commit = row.get("env_git_commit")
    code = str(row["env_code"])
    return f"{code} (commit {commit[:7]})" if isinstance(commit, str) and commit else code


def _seeds(values: Sequence[int]) -> str:
    """'seed 0', 'seeds 0, 1, 2'."""
    ordered = sorted(values)
    return f"seed{'s' if len(ordered) > 1 else ''} {', '.join(map(str, ordered))}"


def _who(rows: pd.DataFrame) -> str:
    """Cells named by method and seeds: 'dense, osp seed 0; rigl (erk-dense-first) seeds 0, 1, 2'."""
    by_seeds: dict[str, list[str]] = {}
    for method in method_order(rows["method"]):
        by_seeds.setdefault(_seeds(list(rows.loc[rows["method"] == method, "seed"])), []).append(str(method))
    return "; ".join(f"{', '.join(methods)} {seeds}" for seeds, methods in by_seeds.items())


def check_code(cells: pd.DataFrame, keys: Sequence[str], warn: Warn) -> None:
    """Warn where a table row (block, method) averages, or a paired delta pairs, cells computed by different code
    (`environment.code`, the fingerprint of the code that computes a cell): their difference may be the code's,
    not the method's or the seed's. The warnings name the cells (method and seeds) and the fingerprints (with the
    commit); a cell whose code was not recorded (an older file) clashes with nothing."""
    if "env_code" not in cells.columns:
        return
    for block, rows in iter_blocks(cells, keys):
        rows = rows[rows["env_code"].notna()]
        if rows["env_code"].nunique() < 2:
            continue
        rows = rows.assign(code=rows.apply(_code_of, axis=1))
        for method in method_order(rows["method"]):
            mine = rows[rows["method"] == method]
            if mine["code"].nunique() > 1:
                parts = [f"{_seeds(list(at['seed']))} at {code}" for code, at in mine.groupby("code", sort=False)]
                warn(f"{block_label(block)}, {method}: averages cells computed by different code "
                     f"(environment.code): {'; '.join(parts)}")
        code = {(m, s): c for m, s, c in zip(rows["method"], rows["seed"], rows["code"])}
        mixed: dict[str, list[str]] = {}
        for a, b in comparisons(rows["method"]):
            seeds = sorted({s for (m, s) in code if m == a and (b, s) in code and code[(a, s)] != code[(b, s)]})
            if seeds:
                mixed.setdefault(_seeds(seeds), []).append(f"{a} - {b}")
        if mixed:
            common = rows["code"].value_counts().index[0]
            apart = rows[rows["code"] != common].groupby("code", sort=False)
            others = "; ".join(f"{_who(at)} at {c}" for c, at in apart)
            pairs = "; ".join(f"{', '.join(names)} at {seeds}" for seeds, names in mixed.items())
            warn(f"{block_label(block)}: paired deltas compare cells computed by different code "
                 f"(environment.code): {pairs} (cells: {others}; every other cell at {common})")


def _by_block_method(cells: pd.DataFrame, keys: Sequence[str]):
    for values, rows in cells.groupby([*keys, "method"], sort=True, dropna=False):
        yield (dict(zip(keys, values[:-1])), values[-1]), rows
