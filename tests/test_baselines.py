"""The reviewer's baselines (gmp, rigl, set, imp), the ERK scope and the training hook they share.

Each test asserts a fact of the method's definition with exact counts: the schedule followed, the weights moved,
the values rewound, and that a cell killed between megabatches resumes to the same file.
"""

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from almabench.cell.config import RunConfig
from almabench.cell.models import build_model
from almabench.cell.run import run_cell
from almabench.cell.sparsity import Masks, app_density, erk_densities, prunable_parameters, top_k_masks
from almabench.cell.train import (
    CellState,
    DeviceData,
    SGDStep,
    batches_per_epoch,
    new_optimiser,
    train_batches,
    train_step,
)
from almabench.data import Dataset, load_dataset
from almabench.grid.specs import GridSpec
from almabench.methods import METHODS, Method
from almabench.methods.gmp import span
from almabench.methods.imp import LotteryRewind, rewind_iteration
from almabench.results.store import without_timing

TINY = dict(dataset="digits", arch="convnet", megabatches=3, epochs=2, milestones=(1,), flip=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------------- ERK


def test_erk_layer_densities_match_the_formula_on_a_hand_made_network():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 8, 3), torch.nn.Flatten(),
                              torch.nn.Linear(8, 10))
    params = prunable_parameters(net, include_linear=True)
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    # n_l = 108, 288, 80 (476 in all); (Σ dims)/(Π dims) = 13/108, 18/288, 18/80. At density 0.5 the first ε,
    # 238 / (13 + 18 + 18), gives the linear layer 18/80 · 4.86 > 1: it goes dense, and ε is solved again on the
    # two convolutions: ε = (0.5 · 476 − 80) / (13 + 18).
    eps = (0.5 * 476 - 80) / (13 + 18)
    expected = {"0.weight": 13 / 108 * eps, "1.weight": 18 / 288 * eps, "3.weight": 1.0}
    densities = erk_densities(shapes, 0.5)
    assert densities == pytest.approx(expected, rel=1e-12)
    assert sum(d * math.prod(shapes[n]) for n, d in densities.items()) == pytest.approx(238)
    # no layer over 1: ε·ratio for every layer, the total kept exactly
    assert erk_densities(shapes, 0.2) == pytest.approx({n: 0.2 * 476 / 49 * r for n, r in
                                                         zip(shapes, (13 / 108, 18 / 288, 18 / 80))})
    masks = top_k_masks({n: torch.rand(p.shape) for n, p in params.items()}, 0.5, "erk")
    assert {n: int(m.sum()) for n, m in masks.items()} == {"0.weight": round(13 * eps), "1.weight": round(18 * eps),
                                                            "3.weight": 80}


def test_erk_is_a_scope_any_pruning_method_takes():
    config = RunConfig(method="app", scope="erk", **{**TINY, "megabatches": 2, "epochs": 1})
    result = run_cell(config)
    model = build_model("convnet", 10, 1, 8)
    shapes = {n: tuple(p.shape) for n, p in prunable_parameters(model).items()}
    for t, step in enumerate(result["steps"], start=1):
        expected = erk_densities(shapes, app_density(t, 2, 4.5))
        assert step["layer_density"] == {n: round(d * math.prod(shapes[n])) / math.prod(shapes[n])
                                         for n, d in expected.items()}
    assert len(set(result["steps"][0]["layer_density"].values())) > 1  # not the same density everywhere


# ---------------------------------------------------------------------------------------------------- gmp


def test_gmp_measured_density_is_the_cubic_at_every_update_and_masks_only_shrink(monkeypatch):
    sets = []
    real_set = Masks.set

    def recording(self, masks):
        sets.append({n: m.clone() for n, m in masks.items()})
        real_set(self, masks)

    monkeypatch.setattr(Masks, "set", recording)
    result = run_cell(RunConfig(method="gmp", **TINY))
    n, train_sizes = result["prunable_total"], [431, 862, 1293]  # digits, T = 3: 479 per megabatch, 90 % train
    start = 1.0
    for t, step in enumerate(result["steps"], start=1):
        total = 2 * batches_per_epoch(train_sizes[t - 1], 64)
        first, last = max(1, int(0.2 * total)), max(1, int(0.75 * total))
        every = max(1, (last - first) // 10)
        assert step["gmp_schedule"] == {"sgd_steps": total, "first": first, "last": last, "every": every}
        final = app_density(t, 3, 4.5)
        iterations = sorted({*range(first, last + 1, every), last})
        assert [u["iteration"] for u in step["mask_updates"]] == iterations
        for update in step["mask_updates"]:
            p = (update["iteration"] - first) / (last - first)
            cubic = 1 - ((1 - final) + (final - start) * (1 - p) ** 3)  # s = s_f + (s_i − s_f)(1 − p)³
            assert update["target_density"] == pytest.approx(cubic, abs=1e-12)
            assert update["nonzero"] == round(cubic * n)  # measured from the weights, exact
        assert step["density"] == round(final * n) / n
        start = step["density"]
    assert len(sets) > 10
    for old, new in zip(sets, sets[1:]):
        assert all(torch.equal(new[k] & ~old[k], torch.zeros_like(new[k])) for k in new)  # new ⊆ old


def test_gmp_keeps_no_checkpoint_from_before_its_last_update():
    gmp = METHODS.get("gmp")()
    first, last, every = span(100)
    assert (first, last, every) == (20, 75, 5)
    assert not gmp.settled(74, 100) and gmp.settled(75, 100) and gmp.settled(100, 100)


# ------------------------------------------------------------------------------------------- rigl and set


def _cell_after_one_sgd_step(method: Method, method_seed: int = 0) -> CellState:
    """A convnet at density 0.4 after one SGD step on CIFAR-shaped random images (every kernel tap gets data)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    dataset = Dataset("cifar-shaped", x, y, x[:8], y[:8], 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 4, False,
                      "test")
    data = DeviceData.from_dataset(dataset, torch.device("cpu"), "fp32", channels_last=False)
    torch.manual_seed(0)
    model = build_model("convnet", 10, 3, 32)
    masks = Masks(prunable_parameters(model))
    masks.set(top_k_masks({k: torch.rand(p.shape, generator=g) for k, p in masks.params.items()}, 0.4))
    config = RunConfig(method=method.name, flip=False)
    cell = CellState(config, model, masks, data, method, torch.Generator().manual_seed(2),
                     torch.Generator().manual_seed(method_seed), optimiser=new_optimiser(model, config))
    train_batches(model, masks, data, [torch.arange(64)], cell.optimiser, 0, False, cell.train_generator)
    return cell


def test_rigl_keeps_every_layer_count_and_grows_the_top_gradient_weights_at_zero_with_zero_momentum():
    rigl = METHODS.get("rigl")()
    cell = _cell_after_one_sgd_step(rigl)
    opt = cell.optimiser
    params = cell.masks.params
    old = {n: m.clone() for n, m in cell.masks.masks.items()}
    weights = {n: p.detach().clone() for n, p in params.items()}
    grads = {n: p.grad.clone() for n, p in params.items()}
    momentum = {n: opt.state[p]["momentum_buffer"].clone() for n, p in params.items()}
    # 1,000 SGD steps: updates every min(100, 750 // 10) = 75 until 750; at 75, f = 0.3 · ½(1 + cos(π/10))
    rigl.after_sgd_step(cell, SGDStep(75, 1000, opt))
    fraction = 0.3 * 0.5 * (1 + math.cos(math.pi * 75 / 750))
    assert rigl.step_record()["mask_updates"][0]["drop_fraction"] == pytest.approx(fraction)
    for name, p in params.items():
        new, was = cell.masks.masks[name].flatten(), old[name].flatten()
        active = int(was.sum())
        n = int(fraction * active)
        assert int(new.sum()) == active and n > 0  # the layer's count, exactly
        survivors = was.clone()  # the active weights of smallest |w| are dropped ...
        survivors[torch.where(was)[0][weights[name].flatten()[was].abs().argsort()[:n]]] = False
        assert torch.equal(new & survivors, survivors)
        grown = new & ~survivors  # ... and as many of the others, of largest |gradient|, come
        others = ~survivors & ~grown
        g = grads[name].flatten().abs()
        assert int(grown.sum()) == n and g[grown].min() >= g[others].max()
        born = new & ~was
        assert born.any()
        assert torch.all(p.detach().flatten()[born] == 0)
        assert torch.all(opt.state[p]["momentum_buffer"].flatten()[born] == 0)
        kept = new & was
        assert torch.equal(p.detach().flatten()[kept], weights[name].flatten()[kept])
        assert torch.equal(opt.state[p]["momentum_buffer"].flatten()[~born], momentum[name].flatten()[~born])
        assert torch.all(p.detach().flatten()[~new] == 0)


def test_rigl_updates_only_on_its_cadence_and_stops_at_three_quarters():
    rigl = METHODS.get("rigl")()
    cell = _cell_after_one_sgd_step(rigl)
    before = {n: m.clone() for n, m in cell.masks.masks.items()}
    for i in (1, 99, 750, 800):  # off the cadence of 75, or at and past the end of the updates
        rigl.after_sgd_step(cell, SGDStep(i, 1000, cell.optimiser))
    assert all(torch.equal(before[n], m) for n, m in cell.masks.masks.items())
    assert rigl.step_record() == {"mask_updates": []}


def test_set_regrowth_is_seeded_reproducible_and_keeps_every_layer_count():
    def regrown(seed: int) -> dict[str, torch.Tensor]:
        method = METHODS.get("set")()
        cell = _cell_after_one_sgd_step(method, method_seed=seed)
        counts = {n: int(m.sum()) for n, m in cell.masks.masks.items()}
        method.after_sgd_step(cell, SGDStep(75, 1000, cell.optimiser))
        assert {n: int(m.sum()) for n, m in cell.masks.masks.items()} == counts
        return cell.masks.masks

    first, again, other = regrown(7), regrown(7), regrown(8)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert any(not torch.equal(first[n], other[n]) for n in first)


# ---------------------------------------------------------------------------------------------------- imp


def test_imp_survivors_equal_the_rewind_point_after_rewinding(monkeypatch):
    config = RunConfig(method="imp", **{**TINY, "batch_size": 16})
    seen = {"at_k": None, "after": []}
    real_before, real_after = LotteryRewind.before_step, LotteryRewind.after_sgd_step

    def after(self, cell, sgd):
        real_after(self, cell, sgd)
        if cell.step == 1 and sgd.iteration == rewind_iteration(sgd.total):
            seen["at_k"] = (sgd.iteration, {k: v.clone() for k, v in cell.model.state_dict().items()})

    def before(self, ctx):
        masks_before = {n: m.clone() for n, m in ctx.masks.masks.items()}
        real_before(self, ctx)
        seen["after"].append((ctx.step, masks_before, {n: m.clone() for n, m in ctx.masks.masks.items()},
                              {k: v.clone() for k, v in ctx.model.state_dict().items()}, self.rewind))

    monkeypatch.setattr(LotteryRewind, "before_step", before)
    monkeypatch.setattr(LotteryRewind, "after_sgd_step", after)
    result = run_cell(config)
    n = result["prunable_total"]
    k, at_k = seen["at_k"]
    assert k == max(1, min(500, 2 * batches_per_epoch(431, 16) // 10)) == 5
    assert [s["rewind_iteration"] for s in result["steps"]] == [k] * 3
    assert [s["density"] for s in result["steps"]] == [round(app_density(t, 3, 4.5) * n) / n for t in (1, 2, 3)]
    for step, old, new, state, rewind in seen["after"][1:]:
        assert all(torch.equal(new[m] & ~old[m], torch.zeros_like(old[m])) for m in new)  # new ⊆ old
        assert rewind.keys() == at_k.keys() and all(torch.equal(rewind[key], at_k[key]) for key in at_k)
        for key, value in state.items():  # every weight and buffer rewound; the pruned weights zero
            expected = at_k[key] * new[key] if key in new else at_k[key]
            assert torch.equal(value, expected), (step, key)


# ----------------------------------------------------------------------------------------- the hook itself


def test_the_hook_runs_after_the_step_and_sees_the_dense_gradient_of_the_minibatch():
    dense = METHODS.get("dense")()
    cell = _cell_after_one_sgd_step(dense)  # density 0.4 and momentum from one step
    model, masks, data = cell.model, cell.masks, cell.data
    batch = torch.arange(32, 64)
    reference = copy.deepcopy(model)
    ref_params = dict(reference.named_parameters())
    x = data.normalise(data.x_train[batch])
    loss = F.cross_entropy(reference(x), data.y_train[batch])
    expected = torch.autograd.grad(loss, [ref_params[n] for n in masks.params])
    seen = {}

    def hook(i):
        seen[i] = ({n: p.grad.clone() for n, p in masks.params.items()},
                   all(torch.all(p[~masks.masks[n]] == 0) for n, p in masks.params.items()))

    train_batches(model, masks, data, [batch], cell.optimiser, 0, False, cell.train_generator, after_step=hook)
    grads, masked_zero = seen[1]
    assert masked_zero  # called after masks.apply()
    for (name, g), e in zip(grads.items(), expected):
        torch.testing.assert_close(g, e, rtol=0, atol=0)
        assert g[~masks.masks[name]].abs().sum() > 0  # masked weights have their gradient: it is dense


def test_methods_without_the_hook_are_not_called_in_training_and_a_misspelt_hook_is_refused():
    assert [m for m in METHODS if METHODS.get(m)().acts_in_training] == ["gmp", "imp", "rigl", "set"]
    with pytest.raises(TypeError, match="after_sgd_stepp is not a hook"):
        type("Typo", (Method,), {"name": "typo", "after_sgd_stepp": lambda self, cell, sgd: None})


def test_pruning_keys_the_baselines_ignore_do_not_multiply_their_cells():
    cells = GridSpec({"method": ("gmp", "rigl", "set", "imp", "app"), "pruner": ("snip", "magnitude")}, {}).configs()
    assert sorted(c.method for c in cells) == ["app", "app", "gmp", "imp", "rigl", "set"]


# ----------------------------------------------------------------------------------------------- resume


@pytest.mark.parametrize("method", ["gmp", "rigl", "set", "imp"])
def test_a_cell_killed_between_megabatches_resumes_to_the_same_file(tmp_path, method):
    from almabench.results.store import load_checkpoint

    config = RunConfig(method=method, **TINY)
    checkpoint = tmp_path / "c.pt"

    def stop(step):
        raise KeyboardInterrupt  # as if killed after the first megabatch

    with pytest.raises(KeyboardInterrupt):
        run_cell(config, checkpoint=checkpoint, progress=stop)
    state = load_checkpoint(checkpoint)  # torch.load(weights_only=True): no pickle
    assert state["step"] == 1
    assert bool(state["method"].get("rewind")) == (method == "imp")
    resumed = []
    result = run_cell(config, checkpoint=checkpoint, on_resume=resumed.append)
    assert resumed == [1]
    uninterrupted = run_cell(config)
    assert json.dumps(without_timing(result), indent=1) == json.dumps(without_timing(uninterrupted), indent=1)
    assert load_dataset("digits").n_train == 1437  # the sizes the tests above assume


def test_the_baselines_specs_expand_into_every_method():
    from almabench.grid.specs import load_spec

    methods = {"dense", "osp", "app", "gmp", "rigl", "set", "imp"}
    full, cpu = load_spec("baselines").configs(), load_spec("baselines-cpu").configs()
    assert len(full) == 21 and {c.method for c in full} == methods and {c.seed for c in full} == {0, 1, 2}
    assert {(c.dataset, c.arch, c.megabatches, c.epochs, c.milestones) for c in full} == {
        ("cifar10", "resnet20", 8, 50, (20, 40))}
    assert len(cpu) == 7 and {c.method for c in cpu} == methods
    assert {(c.dataset, c.megabatches, c.epochs, c.milestones, c.seed) for c in cpu} == {("cifar10", 8, 2, (1,), 0)}


# ------------------------------------------------------------------------------------ rigl and set's budget


@pytest.fixture(scope="module")
def short_megabatch_runs():
    """rigl and set on the default digits at T = 4 and 3 epochs (the case of issue 23): each result, and per
    megabatch the weights grown in it that its kept checkpoint holds, whether each of them got a non-zero
    gradient after its growth, and their values in the kept checkpoint; and the masks' count in every layer."""
    from almabench.cell import run as run_module
    from almabench.methods.rigl import RigL

    real_after, real_evaluate = RigL.after_sgd_step, run_module.evaluate_step
    runs = {}
    for name in ("rigl", "set"):
        grown, moved, kept, counts = {}, {}, {}, {}

        def after(self, cell, sgd, grown=grown, moved=moved):
            if sgd.iteration == 1:
                grown.clear()
                moved.clear()
            for n, p in cell.masks.params.items():  # this step's gradient came before any growth at this step
                moved[n] = moved.get(n, torch.zeros_like(p, dtype=torch.bool)) | (p.grad != 0)
            old = {n: m.clone() for n, m in cell.masks.masks.items()}
            real_after(self, cell, sgd)
            for n, m in cell.masks.masks.items():
                born = m & ~old[n]
                grown[n] = (grown.get(n, torch.zeros_like(m)) & m) | born
                moved[n] = moved[n] & ~born

        def evaluate(cell, *args, grown=grown, moved=moved, kept=kept, counts=counts):
            kept[cell.step] = {n: (g & cell.masks.masks[n], moved[n], cell.masks.params[n].detach().clone())
                               for n, g in grown.items()}
            counts[cell.step] = {n: int(m.sum()) for n, m in cell.masks.masks.items()}
            return real_evaluate(cell, *args)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(RigL, "after_sgd_step", after)
            patch.setattr(run_module, "evaluate_step", evaluate)
            runs[name] = (run_cell(RunConfig(method=name, megabatches=4, epochs=3)), kept, counts)
    return runs


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_rigl_and_set_hold_their_budget_at_every_megabatch_of_a_short_stream(short_megabatch_runs, method):
    result, _, _ = short_megabatch_runs[method]
    assert [s["target_density"] for s in result["steps"]] == [0.8**4.5] * 4
    assert [s["density"] for s in result["steps"]] == pytest.approx([0.8**4.5] * 4, abs=0.005)


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_the_kept_checkpoint_of_rigl_and_set_comes_after_their_last_growth(short_megabatch_runs, method):
    result, kept, _ = short_megabatch_runs[method]
    for step in result["steps"]:
        per_epoch = batches_per_epoch(step["train_size"], 64)  # 323 // 64 + 1 = 6 SGD steps an epoch at t = 1
        last_update = max(u["iteration"] for u in step["mask_updates"] if u["grown"])
        assert last_update < int(0.75 * 3 * per_epoch)  # the window ends at ⌊0.75N⌋ ...
        assert step["best_epoch"] == 3  # ... after epoch 2's end (2 · per_epoch): only epoch 3 ends settled
        assert step["best_epoch"] * per_epoch > last_update
    for t, layers in kept.items():
        grown = sum(int(g.sum()) for g, _, _ in layers.values())
        # every grown weight that had a non-zero gradient after its growth has moved from its growth value, 0
        still_zero = sum(int((w[g & m] == 0).sum()) for g, m, w in layers.values())
        assert grown > 20_000 and still_zero == 0, (t, grown, still_zero)
        # and those that had none are taps that only see padding or dead inputs: rigl grows none of them
        never = sum(int((g & ~m).sum()) for g, m, _ in layers.values())
        assert (never == 0) == (method == "rigl"), (t, never)


def test_a_megabatch_too_short_for_any_settled_epoch_keeps_its_last_epoch():
    class NeverSettled(Method):
        name = "never-settled"

        def after_sgd_step(self, cell, sgd):
            pass

        def settled(self, iteration, total):
            return False

    cell = _cell_after_one_sgd_step(NeverSettled())
    cell.config = cell.config.replace(epochs=3, milestones=(2,), batch_size=16)
    stats = train_step(cell, torch.arange(48), torch.arange(48, 64))
    assert stats.best_epoch == 3  # not 0, the untrained start


def test_rigl_and_set_settle_at_the_end_of_their_window():
    for name in ("rigl", "set"):
        method = METHODS.get(name)()
        assert not method.settled(749, 1000) and method.settled(750, 1000) and method.settled(1000, 1000)


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_rigl_and_set_default_to_erk_with_a_dense_first_layer(short_megabatch_runs, method):
    result, _, counts = short_megabatch_runs[method]
    assert result["config"]["scope"] == "erk-dense-first"
    shapes = {n: tuple(p.shape) for n, p in prunable_parameters(build_model("convnet", 10, 1, 8)).items()}
    layer = erk_densities(shapes, 0.8**4.5, dense=["0.weight"])
    expected = {n: round(d * math.prod(shapes[n])) for n, d in layer.items()}
    assert expected["0.weight"] == 288 and sum(expected.values()) == pytest.approx(0.8**4.5 * 239_904, abs=2)
    assert counts == {t: expected for t in (1, 2, 3, 4)}  # drop-and-grow keeps every layer's count
    assert [s["layer_density"]["0.weight"] for s in result["steps"]] == [1.0] * 4
