import pytest
import torch
import torch.nn.functional as F

from almabench.cell.config import RunConfig
from almabench.cell.models import build_model
from almabench.cell.sparsity import Masks, prunable_parameters, top_k_masks
from almabench.cell.stream import Megabatch, make_stream
from almabench.cell.train import (
    CellState,
    DeviceData,
    SGDStep,
    TrainStats,
    accuracy,
    augment,
    batches_per_epoch,
    count_correct,
    resolve_precision,
    train_batches,
    train_step,
)
from almabench.data import Dataset, load_dataset
from almabench.errors import AlmabenchError
from almabench.methods.base import Method
from almabench.methods.dense import Dense


def per_image_augment(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """The plain path: pad, crop and flip one image at a time, from the same random draws as `augment`."""
    b, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5
    out = []
    for i in range(b):
        image = F.pad(x[i], (padding, padding, padding, padding))
        image = image[:, offsets[0, i] : offsets[0, i] + h, offsets[1, i] : offsets[1, i] + w]
        out.append(image.flip(2) if flips[i] else image)
    return torch.stack(out)


@pytest.mark.parametrize("padding", [1, 4])  # 1: the digits default
def test_vectorised_crop_and_flip_equal_the_per_image_path_exactly(padding):
    x = torch.randint(0, 256, (37, 3, 12, 10), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fast = augment(x, padding, True, torch.Generator().manual_seed(5))
    plain = per_image_augment(x, padding, torch.Generator().manual_seed(5))
    assert fast.dtype == torch.uint8 and torch.equal(fast, plain)
    assert not torch.equal(fast, x)


def test_no_padding_and_no_flip_leave_the_batch_unchanged():
    x = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(augment(x, 0, False, torch.Generator()), x)


def test_flips_alone_draw_only_the_flips():
    """Without padding no crop offsets are drawn: the flips are the generator's first draws."""
    x = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    flips = torch.rand(16, generator=torch.Generator().manual_seed(3)) < 0.5
    expected = torch.where(flips[:, None, None, None], x.flip(3), x)
    assert torch.equal(augment(x, 0, True, torch.Generator().manual_seed(3)), expected)


def _cifar_shaped(n: int = 96) -> Dataset:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return Dataset("cifar-shaped", x, y, x[:8], y[:8], 10, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), 4, True, "test")


def _start(arch: str = "convnet") -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_model(arch, 10, 3, 32)
    masks = top_k_masks({n: p.abs() for n, p in prunable_parameters(model).items()}, 0.6)
    return model, masks


def _batches(n: int, batch_size: int, steps: int) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=torch.Generator().manual_seed(2))[: steps * batch_size].split(batch_size))


def _sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)


def _almabench_weights(dataset: Dataset, channels_last: bool, precision: str = "fp32") -> dict[str, torch.Tensor]:
    model, initial = _start()
    data = DeviceData.from_dataset(dataset, torch.device("cpu"), precision, channels_last=channels_last)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    masks = Masks(prunable_parameters(model))
    masks.set(initial)
    train_batches(model, masks, data, _batches(dataset.n_train, 16, 5), _sgd(model), 4, True,
                  torch.Generator().manual_seed(3))
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def _plain_loop_weights(dataset: Dataset) -> dict[str, torch.Tensor]:
    """The textbook loop: images augmented one at a time, float batches, masks as torch.nn.utils.prune hooks."""
    import torch.nn.utils.prune as prune

    model, initial = _start()
    modules = dict(model.named_modules())
    for name, mask in initial.items():
        prune.custom_from_mask(modules[name.removesuffix(".weight")], "weight", mask)
    optimiser = _sgd(model)
    generator = torch.Generator().manual_seed(3)
    mean = torch.tensor(dataset.mean).view(1, -1, 1, 1) * 255.0
    std = torch.tensor(dataset.std).view(1, -1, 1, 1) * 255.0
    model.train()
    for batch in _batches(dataset.n_train, 16, 5):
        x = (per_image_augment(dataset.x_train[batch], 4, generator).float() - mean) / std
        loss = F.cross_entropy(model(x), dataset.y_train[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    for name in initial:
        prune.remove(modules[name.removesuffix(".weight")], "weight")  # weight = weight_orig * mask, made permanent
    return model.state_dict()


def test_fp32_cpu_training_is_identical_to_the_plain_loop():
    """The device-resident path (index gather, vectorised augmentation, foreach masks) computes the same SGD
    steps, bit for bit, as a per-image loop with prune hooks, when both run fp32 in the same memory format."""
    dataset = _cifar_shaped()
    ours, plain = _almabench_weights(dataset, channels_last=False), _plain_loop_weights(dataset)
    assert ours.keys() == plain.keys()
    for name in ours:
        assert torch.equal(ours[name], plain[name]), name


def test_channels_last_and_bf16_stay_close_to_the_plain_path():
    """channels_last (the CPU default for 32 px) only changes the convolutions' float rounding; bf16 autocast
    rounds more. After 5 SGD steps on random labels the largest differences measured were 1e-6 (fp32, 2 threads),
    2e-3 (fp32, 1 thread: oneDNN picks other kernels) and 2e-2 (bf16); leaving out the flips moved them by 0.08."""
    dataset = _cifar_shaped()
    plain = _plain_loop_weights(dataset)
    for channels_last, precision, tolerance in ((True, "fp32", 5e-3), (True, "bf16", 5e-2)):
        ours = _almabench_weights(dataset, channels_last, precision)
        worst = max(float((ours[n].float() - plain[n].float()).abs().max())
                    for n in plain if plain[n].is_floating_point())
        assert worst < tolerance, (channels_last, precision, worst)


class WorseAfter(torch.nn.Module):
    """A small net that, in eval mode, predicts class 0 for every image once it has trained on more than
    `batches` batches: its validation falls to the share of class 0 from then on. The count is a buffer, so the
    state train_step loads back says which epoch it was saved after."""

    def __init__(self, batches: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                       torch.nn.Linear(8 * 8 * 8, 10))
        self.register_buffer("trained_batches", torch.zeros((), dtype=torch.int64))
        self.batches = batches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.trained_batches += 1
        elif int(self.trained_batches) > self.batches:
            return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.int64), 10).float()
        return self.net(x)


class PrunesAtTheEnd(Method):
    """A training hook that halves the masks at the megabatch's last SGD step."""

    name = "prunes-at-the-end"
    masks: Masks | None = None

    def after_sgd_step(self, cell: CellState, sgd: SGDStep) -> None:
        self.masks = cell.masks
        if sgd.iteration == sgd.total:
            cell.masks.set({n: torch.arange(m.numel()).view_as(m) < m.numel() // 2
                            for n, m in cell.masks.masks.items()})


def _train_worse_after(spoil_after_epochs: int, validate_without_zeros: bool = False, method: Method | None = None
                       ) -> tuple[WorseAfter, TrainStats, float, float, int]:
    """Three epochs of train_step on the first digits megabatch; the net spoils after `spoil_after_epochs`.
    validate_without_zeros leaves the images of class 0 out of validation (a spoiled net scores 0 % there)."""
    dataset = load_dataset("digits")
    stream = make_stream(dataset.n_train, 2, seed=0)
    if validate_without_zeros:
        val = stream[0].val[dataset.y_train[stream[0].val] != 0]
        stream[0] = Megabatch(stream[0].train, val)
    per_epoch = batches_per_epoch(len(stream[0].train), 64)
    torch.manual_seed(0)
    model = WorseAfter(spoil_after_epochs * per_epoch)
    data = DeviceData.from_dataset(dataset, torch.device("cpu"))
    config = RunConfig(epochs=3, batch_size=64, flip=False, milestones=(2,))
    masks = Masks(prunable_parameters(model))
    cell = CellState(config, model, masks, data, method or Dense(), torch.Generator().manual_seed(0))
    stats = train_step(cell, stream[0].train, stream[0].val)
    assert stats.images == 3 * len(stream[0].train)  # 646 = 10 · 64 + 6: no batch of one to drop
    assert 0 < stats.validation_seconds < stats.seconds
    x_val, y_val = data.x_train[stream[0].val], data.y_train[stream[0].val]
    class_zero = 100.0 * float((y_val == 0).double().mean())
    return model, stats, accuracy(model, data, x_val, y_val), class_zero, per_epoch


def test_train_step_loads_back_the_best_validation_epoch_not_the_last():
    """Epoch 1 learns, epochs 2 and 3 validate at the share of class 0: the model left is epoch 1's."""
    model, stats, val_accuracy, class_zero, per_epoch = _train_worse_after(1)
    assert stats.best_epoch == 1 and int(model.trained_batches) == per_epoch  # the state saved after epoch 1
    assert val_accuracy == stats.best_val_accuracy > class_zero + 20


def test_a_kept_epoch_brings_back_its_masks_too():
    """A hook halves the masks at the last step; epoch 1 (dense masks) is kept, so its masks come back."""
    method = PrunesAtTheEnd()
    model, stats, _, _, per_epoch = _train_worse_after(1, method=method)
    assert stats.best_epoch == 1 and int(model.trained_batches) == per_epoch
    assert method.masks is not None and method.masks.kept() == method.masks.total  # epoch 1's masks: all kept
    assert method.masks.nonzero() == method.masks.total  # and its weights, none zeroed


def test_train_step_keeps_the_earliest_of_equally_good_epochs():
    model, stats, val_accuracy, class_zero, per_epoch = _train_worse_after(0)  # every epoch predicts class 0
    assert stats.best_epoch == 1 and int(model.trained_batches) == per_epoch
    assert val_accuracy == stats.best_val_accuracy == class_zero


def test_an_epoch_at_zero_validation_accuracy_is_still_kept():
    model, stats, val_accuracy, class_zero, per_epoch = _train_worse_after(0, validate_without_zeros=True)
    assert (stats.best_epoch, int(model.trained_batches), stats.best_val_accuracy, class_zero) == (1, per_epoch, 0, 0)


class CountsSteps(Method):
    """Records what the training hook is told at every SGD step, and what settled() is asked (never settled:
    only the last epoch, which always competes, may be kept)."""

    name = "counts-steps"

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, float]] = []
        self.asked: list[tuple[int, int]] = []

    def after_sgd_step(self, cell: CellState, sgd: SGDStep) -> None:
        self.seen.append((sgd.iteration, sgd.total, sgd.progress))

    def settled(self, iteration: int, total: int) -> bool:
        self.asked.append((iteration, total))
        return False


def test_the_training_hook_counts_sgd_steps_across_epochs_and_a_last_batch_of_one_is_dropped():
    """129 training images = 2 · 64 + 1: two SGD steps an epoch (batch norm cannot train on one image)."""
    dataset = load_dataset("digits")
    stream = make_stream(dataset.n_train, 4, seed=0)
    torch.manual_seed(0)
    model = build_model("convnet", 10, 1, 8)
    method = CountsSteps()
    config = RunConfig(epochs=2, batch_size=64, flip=False, milestones=(2,))
    cell = CellState(config, model, Masks(prunable_parameters(model)), DeviceData.from_dataset(dataset,
                     torch.device("cpu")), method, torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = train_step(cell, stream[0].train[:129], stream[0].val)
    assert method.seen == [(i, 4, i / 4) for i in range(1, 5)]
    assert method.asked == [(2, 4)]  # at the end of each epoch but the last, which always competes
    assert stats.images == 2 * 128
    # never settled: the last epoch is kept (a megabatch too short for a settled epoch keeps it, not its start)
    assert stats.best_epoch == 2 and not all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("unset", [{"flip": False}, {"milestones": (1,)}])
def test_train_step_refuses_a_config_left_unresolved(unset):
    dataset = _cifar_shaped()
    model = build_model("convnet", 10, 3, 32)
    cell = CellState(RunConfig(epochs=1, **unset), model, Masks(prunable_parameters(model)),
                     DeviceData.from_dataset(dataset, torch.device("cpu")), Dense(), torch.Generator())
    with pytest.raises(ValueError, match="train_step needs a resolved config"):
        train_step(cell, torch.arange(64), torch.arange(64, 96))


@pytest.mark.parametrize("n, batches", [(1, 0), (63, 1), (64, 1), (65, 1), (66, 2), (128, 2), (129, 2), (130, 3)])
def test_an_epoch_drops_only_a_last_batch_of_one_image(n, batches):
    assert batches_per_epoch(n, 64) == batches


def test_images_per_second_leave_validation_out():
    assert TrainStats(1, 90.0, None, images=100, seconds=3.0, validation_seconds=1.0).images_per_second == 50.0
    assert TrainStats(1, 90.0, None, images=100, seconds=3.0, validation_seconds=2.25).images_per_second == 133.3
    assert TrainStats(0, -1.0, None, images=0, seconds=1.0, validation_seconds=1.0).images_per_second is None


def test_precision_auto_is_bf16_on_cuda_and_fp32_elsewhere():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [resolve_precision(p, cpu) for p in ("auto", "fp32", "bf16")] == ["fp32", "fp32", "bf16"]
    assert [resolve_precision(p, cuda) for p in ("auto", "fp32", "bf16")] == ["bf16", "fp32", "bf16"]
    with pytest.raises(AlmabenchError, match="unknown precision 'fp16'; choose from: auto, fp32, bf16"):
        resolve_precision("fp16", cpu)


def test_channels_last_on_cpu_only_from_16_pixels():
    small = Dataset("small", torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64),
                    torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), 2, (0.5,), (0.25,),
                    1, False, "test")
    assert DeviceData.from_dataset(small, torch.device("cpu")).channels_last is False
    assert DeviceData.from_dataset(_cifar_shaped(), torch.device("cpu")).channels_last is True

    def sized(height: int, width: int) -> Dataset:
        x = torch.zeros(4, 1, height, width, dtype=torch.uint8)
        return Dataset("sized", x, torch.zeros(4, dtype=torch.int64), x, torch.zeros(4, dtype=torch.int64), 2, (0.5,),
                       (0.25,), 1, False, "test")

    assert [DeviceData.from_dataset(sized(h, w), torch.device("cpu")).channels_last
            for h, w in ((16, 16), (15, 16), (16, 40))] == [True, False, True]  # the smaller side decides


def test_count_correct_counts_every_image_whatever_the_batch():
    class ClassZero(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.int64), 3).float()

    y = torch.tensor([0, 0, 1, 0, 2, 0, 0])
    x = torch.zeros(7, 1, 4, 4, dtype=torch.uint8)
    data = DeviceData(x, y, x, y, torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    assert [count_correct(ClassZero(), data, x, y, batch_size) for batch_size in (1, 3, 7, 1024)] == [5] * 4
    assert accuracy(ClassZero(), data, x, y) == 100.0 * 5 / 7
