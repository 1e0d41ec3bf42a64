"""Mutation testing, small and fast: would the tests notice if this line were wrong?

Each mutant is one small change to one module: a comparison flipped at its boundary or negated, + and -
swapped (also unary), * and / swapped, a constant off by one, -inf made 0, min and max swapped, and/or and
True/False swapped, a return value dropped (None). For each mutant the module's fast test subset (TARGETS)
runs with -x and a timeout; a mutant its tests pass is a survivor: either a test is missing, or the change
cannot alter behaviour (then it goes in EQUIVALENT with the reason, and later runs report it apart).

The module is restored after every mutant, also on Ctrl-C or SIGTERM (try/finally, from the copy held in
memory); a target with uncommitted changes is refused, so after a kill -9 `git checkout -- FILE` restores it.
Tests run in forked children of one process that has already imported torch, pytest and the rest, so a mutant
costs its tests, not an interpreter start. No bytecode is written for mutants.

    python benchmarks/mutate.py --sample 60 --seed 0 --budget 1440   # ≤ 60 per module (488 of 829 on 2026-12-02)
    python benchmarks/mutate.py                                      # all of them (--list counts them)
    python benchmarks/mutate.py --files almabench/cell/stream.py --list   # the mutants, without running them

It exits 1 when a mutant survives (0 when every one is killed or listed in EQUIVALENT).
"""

from __future__ import annotations

import argparse
import ast
import io
import itertools
import os
import random
import signal
import subprocess
import sys
import time
import tokenize
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The one place that says what is mutated and which tests must catch it: module -> pytest arguments (fast
# first; -x stops at the first failure). When a module moves or splits, change it here.
# The tests of reading, writing and validating a result file: store.py and validate.py (split from it) share them.
RESULT_FILE_TESTS = (
    "tests/test_store.py",
    *(f"tests/test_untrusted_results.py::{t}" for t in (
        "test_every_key_a_reader_uses_is_required_one_at_a_time", "test_a_config_a_run_config_would_not_hold_is_"
        "rejected", "test_numbers_out_of_range_and_odd_shapes_are_rejected",
        "test_read_json_refuses_what_the_parser_would_choke_on", "test_edges_of_the_ranges_are_kept",
        "test_integers_beyond_64_bits_are_refused_and_the_largest_is_kept")),
    *(f"tests/test_robustness.py::{t}" for t in (
        "test_validate_result_names_the_field_and_what_it_should_be",
        "test_validate_result_checks_config_steps_and_missing_keys",
        "test_a_refused_write_inside_torch_save_is_a_storage_error_and_leaves_the_old_file",
        "test_storage_messages_name_the_folder_the_file_and_what_to_do",
        "test_result_and_checkpoint_files_honour_the_umask")),
)

TARGETS: dict[str, tuple[str, ...]] = {
    "almabench/cell/sparsity.py": (
        "tests/test_sparsity.py", "tests/test_wiring.py",
        "tests/test_baselines.py::test_erk_layer_densities_match_the_formula_on_a_hand_made_network",
        *(f"tests/test_scope.py::{t}" for t in (
            "test_erk_with_a_dense_first_layer_gives_the_rest_of_the_budget_to_the_others",
            "test_a_dense_first_layer_larger_than_the_budget_is_refused",
            "test_an_unset_scope_is_the_methods_own_and_a_set_one_is_kept")),
        "tests/test_guards.py::test_erk_with_a_dense_layer_that_takes_exactly_the_whole_budget_leaves_the_others_empty",
    ),
    "methods/app.py": (
        "tests/test_guards.py::test_app_chooses_each_new_mask_inside_the_old_one_even_where_scores_do_not_vanish_on_"
        "pruned_weights", "tests/test_config.py", "tests/test_wiring.py",
    ),
    "methods/osp.py": (
        "tests/test_guards.py::test_osp_prunes_once_at_megabatch_1_to_its_final_density_on_a_sample_of_m1",
        "tests/test_config.py", "tests/test_wiring.py",
    ),
    "almabench/cell/device.py": ("tests/test_run.py::test_devices_resolve_to_what_is_there",),
    "almabench/cell/stream.py": (
        "tests/test_stream.py",
        *(f"tests/test_stream_size.py::{t}" for t in (
            "test_balanced_order_takes_the_rth_image_of_every_class_before_any_r_plus_first",
            "test_the_first_n_hold_each_class_within_one_image_of_n_over_k",
            "test_every_seed_cuts_the_same_pool_and_only_the_pool_into_megabatches")),
        "tests/test_run.py::test_cer_and_gap_through_the_harness_with_a_known_model", "tests/test_wiring.py",
    ),
    "almabench/cell/run.py": (
        *(f"tests/test_run.py::{t}" for t in (
            "test_cer_and_gap_arithmetic_on_a_hand_made_case", "test_seconds_by_part_sums_the_step_records_and_takes_"
            "training_without_validation", "test_devices_resolve_to_what_is_there",
            "test_cer_and_gap_through_the_harness_with_a_known_model",
            "test_a_run_reports_each_record_once_and_its_times_add_up")),
        "tests/test_wiring.py", "tests/test_protocol.py::test_which_accuracies_make_the_gap_on_a_hand_made_case",
    ),
    "almabench/cell/train.py": (
        "tests/test_train.py", "tests/test_sparsity.py::test_masked_weights_stay_zero_through_training",
        "tests/test_wiring.py", "tests/test_baselines.py::test_gmp_keeps_no_checkpoint_from_before_its_last_update",
        "tests/test_protocol.py::test_a_carried_optimiser_keeps_its_momentum_and_restarts_its_learning_rate",
        "tests/test_protocol.py::test_which_accuracies_make_the_gap_on_a_hand_made_case",
        "tests/test_run.py::test_cer_and_gap_through_the_harness_with_a_known_model",
        "tests/test_guards.py::test_an_exact_half_draw_does_not_flip",
        "-k", "not bf16_stay_close",  # 3 s of bf16 rounding bounds, beside the bit-exact fp32 comparison
    ),
    "analysis/stats.py": ("tests/test_analysis.py", "-k",
                          "t_quantile or t_interval or bootstrap or paired or summary_means or deltas"),
    "analysis/paired.py": (
        "tests/test_guards.py", "tests/test_plot_style.py",
        "tests/test_figures.py::test_paired_differences_are_one_panel_per_comparison_each_on_its_own_scale",
        "tests/test_figures.py::test_a_block_whose_methods_share_no_seed_has_no_paired_panel_and_no_paired_figure"),
    "analysis/regime.py": ("tests/test_regime.py", "-k", "not several_folders and not one_rung and not missing_folder"),
    "almabench/results/store.py": RESULT_FILE_TESTS,
    "almabench/results/validate.py": RESULT_FILE_TESTS,  # store.py's validation, split out (issue 39)
}

# Survivors examined and found unable to change what a run computes or records: (module, mutated line) -> why.
# A line edited since no longer matches, and its mutant is reported again to be looked at anew.
_AS_A_SET = "topk's indices are used as a set: sorted or not, the same weights are chosen"
_BATCH_DEFAULT = "every caller passes batch_size (ctx.scores: the protocol's); the default is never used"
_DIGITS = "the rounding of a timing field: no contract fixes its digits (timing is outside repeatability)"
_EVAL_BATCH = "a default never used (run_cell passes the cell's batch), and the count does not depend on the batch"
_LAYOUT = ("a figure's layout (panel sizes and grid, margins, label and legend placement, tick counts, the dodge "
           "between comparisons): the figure tests pin the values, intervals, labels and panels a reader reads")
# Lines every mutant of which is equivalent: (module, original line) -> why. Figure layout only.
WHOLE_LINES: dict[tuple[str, str], str] = {
    **{("analysis/paired.py", line): _LAYOUT for line in (
        "COLUMNS = 5  # panels per row: five 1.6-inch panels fit a page's width",
        "PANEL_W, PANEL_H = 1.6, 1.3  # inches",
        "pad = 0.08 * (high - low) if high > low else 0.5",
        "title = panel.label if len(panel.label) <= 22 else panel.label.replace(\" (\", \"\\n(\")",
        "ax.yaxis.set_major_locator(MaxNLocator(nbins=5))",
        "fig = plt.figure(figsize=(PANEL_W * ncols + 0.5, PANEL_H * sum(heights) + 0.35 * len(groups) + 0.6),",
        "subfigs = fig.subfigures(len(groups), 1, height_ratios=[h + 0.3 for h in heights], squeeze=False)[:, 0]",
        "if i % ncols == 0:", "if i + ncols >= len(panels):",
        "ncols = min(COLUMNS, max(len(panels) for _, panels in groups))",
        "heights = [math.ceil(len(panels) / ncols) for _, panels in groups]",
        'subfig.suptitle(name, fontsize=8, x=0.0, ha="left")')},
    ("analysis/paired.py", "axes = subfig.subplots(nrows, ncols, squeeze=False)"):
        "only axes.flat is used, which walks a squeezed array and an unsqueezed one alike",
    ("analysis/paired.py", "@dataclass(frozen=True)"): "no code assigns to a PairedPanel's fields or hashes one",
    **{("analysis/regime.py", line): _LAYOUT for line in (
        "dodge = 10 ** (DODGE * (i - (len(lines) - 1) / 2))",
        "ax.set_xlim(rows[\"dense_gap\"].min() / 1.15, rows[\"dense_gap\"].max() * 1.15)",
        "longest = max(len(rung_label(row, shown)) for _, row in part.iterrows()) if len(part) else 0",
        "fig.legend(handles, labels, loc=\"upper left\", bbox_to_anchor=(1.0, 0.9), frameon=False, fontsize=7)",
        "previous = -np.inf",
        "ax.set_title(arch, pad=12 + 3.4 * longest)  # above the rung labels (about 3.4 pt a character)",
        "width = ax.get_position().width * fig_width * 72  # the panel's width in points",
        "at = (np.log10(x) - low) / (high - low) * width",
        'ax.annotate(rung_label(row, shown), (x, 1.0), xycoords=("data", "axes fraction"), xytext=(placed - at, 6),')},
    ("analysis/regime.py", "for values, g in table.groupby(group, sort=False, dropna=False):"):
        "regime_table sorts by these keys already, and none of them is ever missing (dataset, pruner, τ, arch, "
        "method, baseline, metric), so sorting or dropping missing keys changes nothing",
}
_TIE = ("a boundary met only by an exact tie of two computed floats (a whisker exactly WIDE times the median, an "
        "interval end exactly at the axis limit or at REACH), which decides only whether that whisker is cut")
EQUIVALENT: dict[tuple[str, str], str] = {
    ("analysis/regime.py", "normal = half.isna() | (half < WIDE * half.median()) if half.notna().any() else "
                           "half.isna()"): _TIE,
    ("analysis/regime.py", 'beyond = several & (end < limits[0]) if arrow == "v" else several & (end >= limits[1])'):
        _TIE,
    ("analysis/regime.py", 'beyond = several & (end <= limits[0]) if arrow == "v" else several & (end > limits[1])'):
        _TIE,
    ("analysis/regime.py", "low = min([low, *(v for v in wide_ends if v > low - reach)])"): _TIE,
    ("analysis/regime.py", "high = max([high, *(v for v in wide_ends if v < high + reach)])"): _TIE,
    ("analysis/regime.py", "if not rung_keys(keys) or summary.empty and deltas.empty:"):
        "delta_table always returns its columns, so deltas without rows merge into the same empty table",
    ("analysis/paired.py", "ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))  # megabatches are whole"):
        _LAYOUT,
    ("almabench/cell/sparsity.py", "over = [name for name in sparse if eps * ratio[name] >= 1.0]"):
        "a layer at exactly d_l = 1 is dense either way; solving ε over the others then gives the same ε",
    ("almabench/cell/sparsity.py", "chosen[torch.topk(joined, keep, sorted=True).indices] = True"): _AS_A_SET,
    ("almabench/cell/sparsity.py", "kept[torch.topk(drop, active - n, sorted=True).indices] = True"): _AS_A_SET,
    **{("almabench/cell/sparsity.py", f"def {name}_scores(model, params, images, labels, generator, "
        "batch_size: int = 257) -> dict[str, Tensor]:"): _BATCH_DEFAULT for name in ("magnitude", "snip", "grasp",
                                                                                      "synflow")},
    ("almabench/cell/sparsity.py", "full.add(min(over, key=ratio.__getitem__))"):
        "order-free: densifying any layer that is over raises ε, so every layer over once stays over and all end "
        "dense; the same dense set gives the same ε (RigL takes the largest ratio first, to the same end)",
    ("almabench/cell/sparsity.py", "kept[torch.topk(grow, n, sorted=True).indices] = True"): _AS_A_SET,
    **{("almabench/cell/sparsity.py", line): _BATCH_DEFAULT for line in (
        "def random_scores(model, params, images, labels, generator, batch_size: int = 257) -> dict[str, Tensor]:",
        "batch_size: int = 257) -> dict[str, Tensor]:")},  # random ignores it; loss_gradients' callers pass it
    ("almabench/cell/stream.py", "@dataclass(frozen=False)"): "no code assigns to a Megabatch's fields or hashes one",
    ("almabench/cell/stream.py", "return shuffled[torch.argsort(rank * num_classes + klass, stable=False)]"):
        "the keys rank·K + class are distinct, so a stable and an unstable sort give one order",
    ("almabench/cell/run.py", "model(torch.zeros(2, channels, *size, device=device))"):
        "the hooks count out[0], one image's output, whatever the batch",
    ("almabench/cell/run.py", "model = build_model(config.arch, dataset.num_classes, dataset.channels, "
                         "dataset.image_size[1]).to(device)"):
        "builders take one side; every dataset shipped or tested is square (for non-square user data, which side "
        "a builder gets is a convention no document states)",
    **{("almabench/cell/run.py", line): _DIGITS for line in (
        '"seconds": round(earlier_seconds + time.perf_counter() - wall, 4),',
        "return {k: round(v, 4) for k, v in parts.items()}", '"prune_seconds": round(prune_seconds, 5),',
        '"train_seconds": round(stats.seconds, 5),', '"validation_seconds": round(stats.validation_seconds, 5),',
        '"test_seconds": round(t1 - t0, 5),', '"gap_seconds": round(t2 - t1, 5),',
        '"seconds": round(seconds + t2 - t0, 5),')},
    ("almabench/cell/train.py", "return round(self.images / training, 2) if training > 0 else None"): _DIGITS,
    ("almabench/cell/train.py", "@dataclass(frozen=False)"):
        "no code assigns to a field of a TrainStats or an SGDStep, or hashes one",
    ("almabench/cell/train.py", "running = None if correct is None else 100.0 * int(correct) / max(2, epoch_images)"):
        "an epoch trains 0 images (then correct is 0: the ratio is 0 either way) or at least 2, never 1",
    ("analysis/stats.py", "@dataclass(frozen=False)"): "no code assigns to an Interval's fields or hashes one",
    ("almabench/results/store.py", "@dataclass(frozen=False)"): "no code assigns to a CellFile's fields or hashes one",
    ("almabench/results/store.py", 'state = torch.load(path, map_location="cpu", weights_only=True, mmap=False)'):
        "mmap decides only when the weights are read from disk (peek reads the step and key), not what they are",
    ("almabench/cell/train.py", "channels_last: bool = True"):
        "DeviceData's default: the harness always passes it (from_dataset); the layout changes no value",
    ("almabench/cell/train.py", "@dataclass(eq=True)"): "no code compares or hashes two CellStates",
    ("almabench/cell/train.py", "crop_padding: int = 1"): "CellState's default: run_cell always passes the config's",
    ("almabench/cell/train.py", "track_accuracy: bool = True,"): "train_step always passes track_accuracy",
    ("almabench/cell/train.py", "optimiser.zero_grad(set_to_none=False)"):
        "zeroed or unset, a gradient is replaced by the next backward; they differ only for a parameter that "
        "gets no gradient (SGD then applies weight decay to it), and every parameter of every model gets one",
    ("almabench/cell/train.py", "loss_sum -= loss.detach()"):
        "the summed loss is only tested for finiteness, which its sign does not change",
    ("almabench/cell/train.py", "@dataclass(frozen=False, eq=False)"):
        "DeviceData: no code assigns to a field of one (CellState, the other eq=False dataclass, is not frozen)",
    ("almabench/cell/train.py", "@dataclass(frozen=True, eq=True)"): "no code compares or hashes two DeviceData",
    ("almabench/cell/train.py", "return torch.autocast(device_type, dtype=self.autocast_dtype and torch.bfloat16,"):
        "None (autocast disabled: dtype unused) and bf16 (bf16 and bf16) give the same autocast",
    ("almabench/cell/train.py", "def count_correct(model: nn.Module, data: DeviceData, x: Tensor, y: Tensor, "
                           "batch_size: int = 1025) -> int:"): _EVAL_BATCH,
    ("almabench/cell/train.py", "def accuracy(model: nn.Module, data: DeviceData, x: Tensor, y: Tensor, "
                           "batch_size: int = 1025) -> float:"): _EVAL_BATCH,
    ("almabench/cell/train.py", "eval_batch_size: int = 1025"): _EVAL_BATCH,
    ("almabench/cell/train.py", "step: int = 1  # the megabatch being trained or last finished, 1-based"):
        "run_cell sets cell.step before every megabatch and a resume restores it: the default is never read",
    ("almabench/cell/train.py", "best = (-2.0, 0, None, copy.deepcopy(model.state_dict()), _mask_copy(masks) if hook "
                           "else None)"): "any accuracy (≥ 0) beats -1 and -2 alike",
    ("methods/osp.py", "ctx.prune(ctx.scores(sample), self.target_density(2, ctx.config), within_current=False)"):
        "OSP's target density is 0.8^τ at every step: the step it is asked for changes nothing",
    ("methods/osp.py", "ctx.prune(ctx.scores(sample), self.target_density(1, ctx.config), within_current=True)"):
        "OSP prunes once, at megabatch 1, when every mask is still all ones: within them is within everything",
}

PRELOAD = ("torch", "torchvision", "numpy", "pandas", "sklearn.datasets", "click", "joblib", "matplotlib.pyplot",
           "seaborn", "pytest")  # imported once in the parent; almabench itself never (children import the mutant)

SWAPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==", "+": "-", "-": "+", "*": "/",
         "/": "*", "//": "*", "%": "*", "**": "*", "+=": "-=", "-=": "+=", "*=": "/=",
         "min": "max", "max": "min", "and": "or", "or": "and", "True": "False", "False": "True"}


@dataclass(frozen=True)
class Mutant:
    path: str
    start: int  # character offsets into the source
    end: int
    replacement: str
    line: int
    original_line: str
    mutated_line: str

    def apply(self, source: str) -> str:
        return source[: self.start] + self.replacement + source[self.end :]


def mutants(path: str) -> list[Mutant]:
    """Every mutant of one module, in source order."""
    source = (ROOT / path).read_text()
    lines = source.splitlines(keepends=True)
    line_start = [0]
    for text in lines:
        line_start.append(line_start[-1] + len(text))

    def offset(row: int, col: int) -> int:  # tokenize's (1-based row, character column)
        return line_start[row - 1] + col

    spans: list[tuple[int, int, str]] = []
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
              if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)]
    for i, tok in enumerate(tokens):
        start, end = offset(*tok.start), offset(*tok.end)
        if tok.type in (tokenize.OP, tokenize.NAME) and tok.string in SWAPS:
            if not (tok.string in ("*", "**") and _unary(tokens, i)):  # *args and **kwargs are not arithmetic
                spans.append((start, end, SWAPS[tok.string]))
        elif tok.type == tokenize.NUMBER and not _style_argument(tokens, i):
            value = ast.literal_eval(tok.string)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                spans.append((start, end, repr(value + 1)))
        elif tok.string == "inf" and i >= 2 and tokens[i - 1].string == ".":  # torch.inf, math.inf, -torch.inf
            first = i - 2
            if first >= 1 and tokens[first - 1].string == "-" and _unary(tokens, first - 1):
                first -= 1
            spans.append((offset(*tokens[first].start), end, "0.0"))
    for node in ast.walk(ast.parse(source)):
        value = node.value if isinstance(node, ast.Return) else None
        if value is not None and not (isinstance(value, ast.Constant) and value.value is None):
            spans.append((_ast_offset(lines, line_start, value.lineno, value.col_offset),
                          _ast_offset(lines, line_start, value.end_lineno, value.end_col_offset), "None"))

    found = []
    for start, end, replacement in sorted(set(spans)):
        row = next(r for r in range(len(lines), 0, -1) if line_start[r - 1] <= start)
        mutated = source[: start] + replacement + source[end:]
        try:
            compile(mutated, path, "exec")
        except SyntaxError:  # e.g. `def f(*, x)` made `def f(/, x)`: not a program, nothing to learn
            continue
        last = mutated.find("\n", line_start[row - 1])
        found.append(Mutant(path, start, end, replacement, row, lines[row - 1].strip(),
                            mutated[line_start[row - 1] : last if last >= 0 else None].strip()))
    return found


# A figure's look, not what it shows: the figure tests pin the numbers, labels and panels a reader reads, never a
# font size or a line width, so a constant given to one of these keyword arguments is not mutated.
STYLE_ARGUMENTS = {"fontsize", "labelsize", "linewidth", "elinewidth", "markersize", "markeredgewidth", "capsize",
                   "alpha", "zorder", "pad", "rotation", "dpi", "shrinkA", "shrinkB"}


def _style_argument(tokens: list[tokenize.TokenInfo], i: int) -> bool:
    """True where token i is the value of a STYLE_ARGUMENTS keyword (`fontsize=7`, or `"linewidth": 0.4`)."""
    if i < 2 or tokens[i - 1].string not in ("=", ":"):
        return False
    name = tokens[i - 2].string.strip("'\"")
    return name in STYLE_ARGUMENTS


KEYWORDS_BEFORE_OPERANDS = {"return", "in", "not", "and", "or", "if", "else", "lambda", "yield", "assert"}


def _unary(tokens: list[tokenize.TokenInfo], i: int) -> bool:
    """Whether the operator at i stands before an operand (unary minus, *args) rather than between two."""
    if i == 0:
        return True
    before = tokens[i - 1]
    if before.type == tokenize.OP:
        return before.string not in (")", "]", "}")
    return before.type == tokenize.NAME and before.string in KEYWORDS_BEFORE_OPERANDS


def _ast_offset(lines: list[str], line_start: list[int], row: int, byte_col: int) -> int:
    """ast columns count UTF-8 bytes; the source is indexed by characters."""
    return line_start[row - 1] + len(lines[row - 1].encode()[:byte_col].decode())


def run_tests(args: tuple[str, ...], timeout: float) -> str:
    """'passed', 'failed' or 'timeout': pytest -x over args in a forked child (its own process group)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 99
        try:
            os.setpgid(0, 0)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            import pytest

            code = int(pytest.main(["-q", "-x", "-p", "no:cacheprovider", *args]))
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return "passed" if os.waitstatus_to_exitcode(status) == 0 else "failed"
            if time.monotonic() > deadline:
                return "timeout"
            time.sleep(0.02)
    finally:
        try:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", default=",".join(TARGETS), help="comma-separated modules of TARGETS")
    parser.add_argument("--sample", type=int, default=0, help="at most this many mutants per module (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seeds --sample")
    parser.add_argument("--budget", type=float, default=0, help="start no mutant after this many seconds (0: none)")
    parser.add_argument("--timeout", type=float, default=0, help="per mutant (0: 3 × the module's clean run + 10 s)")
    parser.add_argument("--lines", default="", help="only mutants on these comma-separated line numbers")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    args = parser.parse_args()
    files = [f for f in args.files.split(",") if f]
    unknown = [f for f in files if f not in TARGETS]
    if unknown:
        parser.error(f"not in TARGETS: {', '.join(unknown)}; choose from: {', '.join(TARGETS)}")
    plan = {}
    for path in files:
        found = mutants(path)
        if args.lines:
            found = [m for m in found if m.line in {int(n) for n in args.lines.split(",")}]
        if args.sample and len(found) > args.sample:
            found = sorted(random.Random(f"{args.seed}:{path}").sample(found, args.sample), key=lambda m: m.start)
        plan[path] = found
    if args.list:
        for m in (m for found in plan.values() for m in found):
            print(f"{m.path}:{m.line}: {m.original_line}  ->  {m.mutated_line}")
        return 0
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *files], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    if dirty:
        print(f"uncommitted changes in a target (a mutant left by a killed run?): commit or `git checkout --` "
              f"them first:\n{dirty}", file=sys.stderr)
        return 2

    os.chdir(ROOT)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.dont_write_bytecode = True  # inherited by the children: a mutant never leaves a .pyc behind
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    signal.signal(signal.SIGTERM, _interrupt)  # a kill restores the module as Ctrl-C does

    wall = time.monotonic()
    timeouts = {}
    for path in plan:
        t0 = time.monotonic()
        if run_tests(TARGETS[path], 1800) != "passed":
            print(f"{path}: its tests fail without any mutant; fix that first", file=sys.stderr)
            return 2
        timeouts[path] = args.timeout or 3 * (time.monotonic() - t0) + 10
        print(f"{path}: {len(plan[path])} mutants, clean run {time.monotonic() - t0:.1f} s, timeout "
              f"{timeouts[path]:.0f} s", flush=True)
    # round robin over the modules, so that a --budget cut leaves each module about as tried as the others
    order = [m for group in itertools.zip_longest(*plan.values()) for m in group if m is not None]
    originals = {path: (ROOT / path).read_text() for path in plan}
    survivors: list[Mutant] = []
    counts = {path: dict.fromkeys(("tried", "killed", "timeout", "survived", "equivalent", "untried"), 0)
              for path in plan}
    try:
        for m in order:
            tally = counts[m.path]
            if args.budget and time.monotonic() - wall > args.budget:
                tally["untried"] += 1
                continue
            target = ROOT / m.path
            target.write_text(m.apply(originals[m.path]))
            try:
                outcome = run_tests(TARGETS[m.path], timeouts[m.path])
            finally:
                target.write_text(originals[m.path])
            tally["tried"] += 1
            why = EQUIVALENT.get((m.path, m.mutated_line)) or WHOLE_LINES.get((m.path, m.original_line))
            status = {"failed": "killed", "timeout": "timeout"}.get(outcome, "equivalent" if why else "survived")
            tally[status] += 1
            if status == "survived":
                survivors.append(m)
            print(f"  {status:10} {m.path}:{m.line}: {m.mutated_line}", flush=True)
    finally:
        for path, text in originals.items():
            (ROOT / path).write_text(text)

    print(f"\n{'module':26} tried killed timeout survived equivalent untried")
    for path, c in counts.items():
        print(f"{path:26} {c['tried']:5} {c['killed']:6} {c['timeout']:7} {c['survived']:8} {c['equivalent']:10} "
              f"{c['untried']:7}")
    print(f"wall time {time.monotonic() - wall:.0f} s")
    for m in survivors:
        print(f"SURVIVED {m.path}:{m.line}\n    {m.original_line}\n -> {m.mutated_line}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
