"""A method's own scope: rigl and set default to ERK with a dense first layer (RigL's CIFAR setting), every other
method to the global top-k; names follow the scope used, and every cell named before keeps its name."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from almabench.cell.config import RunConfig, RunOptions
from almabench.cell.sparsity import erk_densities, prunable_parameters, top_k_masks
from almabench.cli import main
from almabench.errors import AlmabenchError
from almabench.grid.specs import GridSpec, resolve_configs
from almabench.methods import METHODS

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
PAPER_METHODS = ("dense", "osp", "app", "app-released")


def _hand_made_net() -> dict[str, torch.nn.Parameter]:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 8, 3), torch.nn.Flatten(),
                              torch.nn.Linear(8, 10))
    return prunable_parameters(net, include_linear=True)


def test_erk_with_a_dense_first_layer_gives_the_rest_of_the_budget_to_the_others():
    params = _hand_made_net()
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    # n_l = 108, 288, 80 (476 in all): density 0.5 keeps 238. The first layer takes its 108, and ε is solved on
    # the other two with what is left: ε = (238 − 108) / (18 + 18), (Σ dims)/(Π dims) = 18/288 and 18/80.
    eps = (238 - 108) / (18 + 18)
    expected = {"0.weight": 1.0, "1.weight": 18 / 288 * eps, "3.weight": 18 / 80 * eps}
    densities = erk_densities(shapes, 0.5, dense=["0.weight"])
    assert densities == pytest.approx(expected, rel=1e-12)
    assert sum(d * math.prod(shapes[n]) for n, d in densities.items()) == pytest.approx(238, rel=1e-12)
    masks = top_k_masks({n: torch.rand(p.shape) for n, p in params.items()}, 0.5, "erk-dense-first")
    assert {n: int(m.sum()) for n, m in masks.items()} == {"0.weight": 108, "1.weight": 65, "3.weight": 65}


def test_a_dense_first_layer_larger_than_the_budget_is_refused():
    shapes = {n: tuple(p.shape) for n, p in _hand_made_net().items()}
    with pytest.raises(AlmabenchError) as caught:
        erk_densities(shapes, 0.2, dense=["0.weight"])
    assert str(caught.value) == ("density 0.2 keeps 95 of 476 weights, fewer than the 108 of the layer(s) kept "
                                 "dense (0.weight); use scope erk, or a smaller tau")


def test_an_unset_scope_is_the_methods_own_and_a_set_one_is_kept():
    methods = tuple(METHODS)
    unset = {c.method: c for c in GridSpec({"method": methods}, {}).configs()}
    assert {m: c.scope for m, c in unset.items()} == {
        m: ("erk-dense-first" if m in ("rigl", "set") else "global") for m in methods}
    for scope in ("global", "layer", "erk", "erk-dense-first"):
        chosen = GridSpec({"method": methods}, {"scope": scope}).configs()
        pruning = [m for m in methods if METHODS.get(m).prunes]  # dense and the warm-start controls prune nothing
        assert {c.method: c.scope for c in chosen if c.method in pruning} == {m: scope for m in pruning}
    # a direct RunConfig resolves the same way as a grid's
    assert RunConfig(method="set").resolve(False, 1, scope="erk-dense-first").scope == "erk-dense-first"


def test_names_follow_the_scope_used_and_global_keeps_the_old_names():
    def name(method: str, **fixed) -> str:
        (config,) = resolve_configs(GridSpec({"method": (method,)}, fixed).configs(), RunOptions())
        return config.hash()

    for method in ("rigl", "set"):
        assert name(method) != name(method, scope="global")  # its own default is another computation
        assert name(method, scope="erk-dense-first") == name(method)
    for method in ("app", "osp", "dense", "gmp", "imp", "app-released"):
        assert name(method) == name(method, scope="global")
    # a config is its non-default fields: global too, though the name leaves it out; unset is named as unset
    for method, scope in (("app", None), ("rigl", None), ("rigl", "global")):
        (config,) = resolve_configs(GridSpec({"method": (method,)}, {"scope": scope} if scope else {}).configs(),
                                    RunOptions())
        assert RunConfig.from_dict(config.non_default()) == config
    assert RunConfig(method="rigl").hash() not in (RunConfig(method="rigl", scope=s).hash() for s in
                                                   ("global", "erk-dense-first"))
    # pinned: the name the default app cell has had since names existed, the sha1 of its canonical JSON
    assert name("app") == RunConfig(flip=False, crop_padding=1, milestones=(20, 40), scope="global").hash()
    assert name("app") == "1fd3422aaae467e9"  # sha1('{"crop_padding":1,"flip":false,"milestones":[20,40]}')[:16]


def test_every_committed_result_keeps_its_name():
    """The published study: each file's recorded config, expanded as a grid would from its axes, is its name: with
    scope unset where the file ran at its method's own scope (global for the paper's methods, gmp and imp;
    erk-dense-first for the rigl and set cells run since), with --set scope=global for the rigl and set cells that
    ran global."""
    files = sorted(RESULTS.glob("*/*.json"))
    assert len(files) >= 54  # the published study, and the overfitting rung as it lands
    methods, scopes = set(), set()
    for path in files:
        config = json.loads(path.read_text())["config"]
        scopes.add((config["method"] in ("rigl", "set"), config["scope"]))
        own = config["scope"] == METHODS.get(config["method"]).default_scope
        unset = {k: v for k, v in config.items() if k != "scope" or not own}
        (resolved,) = resolve_configs(GridSpec({}, unset).configs(), RunOptions())
        assert resolved.hash() == path.stem, path
        methods.add(config["method"])
    assert methods >= {*PAPER_METHODS, "rigl", "set"}
    assert scopes <= {(False, "global"), (True, "global"), (True, "erk-dense-first")}
    assert (True, "global") in scopes  # rigl and set at both scopes are covered


def test_status_still_counts_the_published_study_as_done():
    result = CliRunner().invoke(main, ["status", str(RESULTS / "cifar10-t8"), "--spec", "study-cifar10"])
    assert result.exit_code == 0, result.output
    assert "  study-cifar10          12 cells: 12 done, 0 failed, 0 corrupt, 0 missing" in result.output.splitlines()


def test_dry_run_shows_rigls_own_scope_and_global_where_set(tmp_path):
    def dry(*extra: str) -> list[str]:
        result = CliRunner().invoke(main, ["run", "--methods", "rigl", "--megabatches", "2", "--epochs", "1",
                                           "--dry-run", "--out", str(tmp_path), *extra])
        assert result.exit_code == 0, result.output
        return result.output.splitlines()

    assert dry()[1:3] == [
        "  missing  rigl digits convnet T=2 epochs=1 seed=0 scope=erk-dense-first 6809a1040da5faa8.json  "
        "1,938 image-passes",
        "           not the paper's: epochs=1, milestones=[1], crop_padding=1, flip=false, scope=erk-dense-first"]
    assert dry("--set", "scope=global")[1:3] == [  # the name rigl's global cells always had: no scope in it
        "  missing  rigl digits convnet T=2 epochs=1 seed=0      6fae9a4a818d2de6.json  1,938 image-passes",
        "           not the paper's: epochs=1, milestones=[1], crop_padding=1, flip=false"]
    assert dry("--scope", "global")[1:3] == dry("--set", "scope=global")[1:3]  # the flag, as --pruner is one


def test_an_unknown_scope_is_one_line_naming_the_valid_ones(tmp_path):
    result = CliRunner().invoke(main, ["run", "--scope", "erk-first", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and not (tmp_path / "out").exists()
    assert result.output.strip().splitlines()[-1] == (
        "Error: unknown pruning scope 'erk-first'; choose from: erk, erk-dense-first, global, layer")


def test_a_first_layer_the_budget_cannot_hold_stops_the_run_before_any_cell(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "keep.json").write_text("{}")
    result = CliRunner().invoke(main, ["run", "--methods", "rigl", "--tau", "40", "--megabatches", "2", "--epochs",
                                       "1", "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: rigl on convnet, scope erk-dense-first: density 0.0001329 keeps 32 of 239,904 weights, fewer than "
        "the 288 of the layer(s) kept dense (0.weight); use scope erk, or a smaller tau")
    assert "Traceback" not in result.output
    assert [p.name for p in out.iterdir()] == ["keep.json"] and (out / "keep.json").read_text() == "{}"
