"""The released code's harness (protocol = "released", SPEC departures 4-7) against hand-made expectations."""

import numpy as np
import pytest
import torch

from almabench.cell.config import RunConfig, RunOptions
from almabench.cell.models import ARCHS, build_model
from almabench.cell.run import run_cell
from almabench.cell.sparsity import Masks, prunable_parameters
from almabench.cell.stream import make_stream
from almabench.cell.train import CellState, DeviceData, new_optimiser, train_step
from almabench.data import DATASETS, Dataset, _load_cached, channel_stats, load_dataset
from almabench.methods.dense import Dense
from almabench.results.store import without_timing

TINY = dict(dataset="digits", arch="convnet", megabatches=3, epochs=2, milestones=(1,), flip=False)


class ZeroWhenTrainingOneWhenEvaluating(torch.nn.Module):
    """Answers class 0 in train mode and class 1 in eval mode, whatever the image: which accuracy a protocol
    reads (running training batches or an eval pass) shows in its numbers."""

    def __init__(self, num_classes: int, channels: int, size: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 1, 1)
        self.num_classes = num_classes

    def forward(self, x):
        answer = torch.nn.functional.one_hot(torch.full((len(x),), 0 if self.training else 1), self.num_classes)
        return self.conv(x).flatten(1)[:, :1] * 0 + answer.float()


@pytest.mark.parametrize("protocol", ["paper", "released"])
def test_which_accuracies_make_the_gap_on_a_hand_made_case(tmp_path, protocol):
    """Released: the running accuracy of the training batches of M_1..M_t (dataset order, from the head) minus
    the validation accuracy on the fixed tail's first t slices. Paper: eval-mode accuracies on the shuffled
    replay set's train and validation parts."""
    rng = np.random.default_rng(0)
    y_train = rng.integers(0, 3, 100)
    path = tmp_path / "known.npz"
    np.savez(path, x_train=np.zeros((100, 4, 4), np.uint8), y_train=y_train,
             x_test=np.zeros((10, 4, 4), np.uint8), y_test=rng.integers(0, 3, 10))
    ARCHS._entries["zero-one"] = ZeroWhenTrainingOneWhenEvaluating
    try:
        config = RunConfig(method="dense", dataset=str(path), arch="zero-one", megabatches=4, epochs=1,
                           milestones=(1,), protocol=protocol, seed=5)
        result = run_cell(config)
    finally:
        del ARCHS._entries["zero-one"]
    # 100 examples, T = 4: megabatches of 25, 3 validate (0.1·25 rounded half up), 22 train.
    stream = make_stream(100, 4, seed=5)
    for t, step in enumerate(result["steps"], start=1):
        assert step["train_size"] == 22 * t and step["val_size"] == 3 * t
        if protocol == "released":  # validation slices start after the 4·22 = 88 training examples
            train, val = y_train[: 22 * t] == 0, y_train[88 : 88 + 3 * t] == 1
        else:
            train = y_train[torch.cat([m.train for m in stream[:t]]).numpy()] == 1
            val = y_train[torch.cat([m.val for m in stream[:t]]).numpy()] == 1
        assert step["train_accuracy"] == pytest.approx(100 * train.mean())
        assert step["val_accuracy"] == pytest.approx(100 * val.mean())
        assert step["gap"] == pytest.approx(step["train_accuracy"] - step["val_accuracy"])


def test_a_carried_optimiser_keeps_its_momentum_and_restarts_its_learning_rate():
    dataset = load_dataset("digits")
    data = DeviceData.from_dataset(dataset, torch.device("cpu"))
    config = RunConfig(epochs=1, milestones=(1,), flip=False)
    idx, val = torch.arange(0, 200), torch.arange(200, 240)

    def trained(optimiser_for):
        torch.manual_seed(0)
        model = build_model("convnet", 10, 1, 8)
        masks = Masks(prunable_parameters(model))
        train_step(CellState(config, model, masks, data, Dense(), torch.Generator().manual_seed(0), crop_padding=1,
                             optimiser=optimiser_for(model)), idx, val)
        return model

    fresh = trained(lambda model: None)
    carried_optimiser = {}

    def with_momentum(model):
        optimiser = new_optimiser(model, config)
        for p in model.parameters():
            optimiser.state[p]["momentum_buffer"] = torch.full_like(p, 0.01)
        for group in optimiser.param_groups:
            group["lr"] = 1e-5  # where an earlier step's schedule left it
        carried_optimiser["it"] = optimiser
        return optimiser

    carried = trained(with_momentum)
    group = carried_optimiser["it"].param_groups[0]
    assert group["lr"] == pytest.approx(config.lr * config.lr_gamma)  # restarted at 0.1, then its milestone
    assert not torch.equal(fresh[0].weight, carried[0].weight)  # the old momentum moved the weights
    # with empty momentum buffers and the learning rate restarted, carrying changes nothing
    same = trained(lambda model: new_optimiser(model, config))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), same.state_dict().values()))


def test_released_protocol_resumes_mid_stream_to_the_same_result(tmp_path):
    """The carried optimiser is part of the checkpoint: a resumed cell ends exactly as an uninterrupted one."""
    config = RunConfig(method="app-released", protocol="released", **TINY)
    checkpoint = tmp_path / "c.pt"

    def stop(step):
        raise KeyboardInterrupt  # as if killed after the first megabatch

    with pytest.raises(KeyboardInterrupt):
        run_cell(config, RunOptions(), checkpoint=checkpoint, progress=stop)
    resumed = []
    result = run_cell(config, RunOptions(), checkpoint=checkpoint, on_resume=resumed.append)
    assert resumed == [1]
    assert without_timing(result) == without_timing(run_cell(config))


def test_released_app_scores_on_the_first_examples_of_the_dataset_every_step(monkeypatch):
    from almabench.methods import StepContext

    samples = []
    real_sample_batch = StepContext.sample_batch

    def recording(self, indices):
        samples.append(indices.tolist())
        return real_sample_batch(self, indices)

    monkeypatch.setattr(StepContext, "sample_batch", recording)
    config = RunConfig(method="app-released", protocol="released", **TINY)
    run_cell(config)
    n_sample = round(0.2 * (1437 // 3))  # |π_t| = 0.2·|M| = 96 for digits at T = 3
    assert samples == [list(range(n_sample))] * 3


@pytest.mark.parametrize("protocol", ["paper", "released"])
def test_the_released_protocol_hands_every_step_one_optimiser_and_the_paper_none(monkeypatch, protocol):
    import almabench.cell.run

    given = []
    real_train_step = almabench.cell.run.train_step

    def recording(*args, **kwargs):
        given.append(args[0].optimiser)  # the cell's state, as train_step finds it
        return real_train_step(*args, **kwargs)

    monkeypatch.setattr(almabench.cell.run, "train_step", recording)
    run_cell(RunConfig(method="app", protocol=protocol, **TINY))
    if protocol == "paper":
        assert given == [None] * 3  # train_step makes a new one each step
    else:
        assert given[0] is not None and all(o is given[0] for o in given)
        assert given[0].state  # it holds momentum buffers from the steps before


class TopLeftPixelIsLit(torch.nn.Module):
    """Class 1 when the top-left pixel is lit, else class 0: a random crop that shifts in padding shows."""

    def __init__(self, num_classes: int, channels: int, size: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 1, 1)

    def forward(self, x):
        lit = x[:, 0, 0, 0]
        return torch.stack([-lit, lit], 1) + self.conv(x).flatten(1)[:, :1] * 0


@pytest.mark.parametrize("protocol", ["paper", "released"])
def test_validation_and_the_pruning_sample_as_each_protocol_reads_them(tmp_path, monkeypatch, protocol):
    from almabench.cell.sparsity import PRUNERS, magnitude_scores

    images = torch.zeros((210, 1, 4, 4), dtype=torch.uint8)
    images[:, 0, 0, 0] = 255  # only the top-left pixel is lit: after normalising, it is > 0 and the rest < 0
    mean, std = channel_stats(images[:200])
    lit_data = Dataset(name="lit", x_train=images[:200], y_train=torch.ones(200, dtype=torch.int64),
                       x_test=images[200:], y_test=torch.ones(10, dtype=torch.int64), num_classes=2, mean=mean,
                       std=std, crop_padding=1, flip=False, source="test")  # class 1 only: a user's .npz may not
    monkeypatch.setitem(DATASETS._entries, "lit-top-left", lambda root, download: lit_data)
    _load_cached.cache_clear()
    seen, batch_sizes = [], []

    def recording_snip(model, params, images, labels, generator, batch_size=256):
        seen.append(images)
        batch_sizes.append(batch_size)
        return magnitude_scores(model, params, images, labels, generator)

    monkeypatch.setitem(PRUNERS._entries, "snip", recording_snip)
    monkeypatch.setitem(ARCHS._entries, "lit", TopLeftPixelIsLit)
    config = RunConfig(method="app", dataset="lit-top-left", arch="lit", megabatches=2, epochs=1, milestones=(1,),
                       crop_padding=1, flip=False, protocol=protocol)
    result = run_cell(config)
    val = [s["val_accuracy"] for s in result["steps"]]
    lit = [float((images[:, 0, 0, 0] > 0).float().mean()) for images in seen]
    if protocol == "paper":
        assert val == [100.0, 100.0] and lit == [1.0, 1.0] and batch_sizes == [256, 256]
    else:  # a 1-pixel pad and a 4-px crop keep the lit pixel in the corner for 1 offset in 9
        assert all(0 < v < 40 for v in val)
        assert all(0 < share < 0.4 for share in lit)
        assert batch_sizes == [100, 100]  # SNIP's batches over π_t in the released code
