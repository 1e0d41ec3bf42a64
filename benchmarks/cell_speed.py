"""Whole-cell speed: almabench's run_cell against a cell written the way the released APP code runs one.

Both sides do the same work, in one process, on the same CIFAR-shaped data: APP (SNIP on 20 % of each megabatch,
global top-k to 0.8^δ_t) over T megabatches with full replay, E epochs of SGD per megabatch (batch 64, the best
validation epoch kept), then the test set and the paper's gap (accuracy on the replay set's train and
validation parts) after every megabatch, and a checkpoint. The released-style side does it with the released
code's tools: torchvision's CIFAR10 with PIL transforms behind DataLoaders (2 workers, made anew per pass as
there), masks as torch.nn.utils.prune hooks, the model saved with torch.save after every epoch and the best
one copied and loaded back, evaluation at the training batch size. Each side's time is split into start-up,
pruning, training, validation, gap, test and checkpoints.

Before the cells, evaluation throughput is measured on the test images for every batch size and with and
without batch norm folded, first with glibc's default allocator and then with freed memory reused
(almabench.cell.allocator): the fastest of them is the machine's best, and almabench's own choice
(almabench.cell.inference) is reported as a fraction of it. The allocator then stays tuned for both cells, so the
released-style side gets its benefit too. Achieved training TFLOP/s of both sides is set against a large fp32
matmul on the same cores.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.prune as prune

from almabench.cell.allocator import reuse_freed_memory
from almabench.cell.config import RunConfig, RunOptions, default_milestones
from almabench.cell.inference import FOLD_FROM_IMAGES, eval_batch_size, inference_model, largest_activation_bytes
from almabench.cell.models import build_model, init_seed
from almabench.cell.run import run_cell
from almabench.cell.sparsity import app_density, prunable_parameters, top_k_masks
from almabench.cell.train import DeviceData, count_correct, synchronize
from almabench.data import load_dataset

PARTS = ("startup", "pruning", "training", "validation", "gap", "test", "checkpoint")
BATCH, LR, MOMENTUM, WEIGHT_DECAY, TAU, SAMPLE_FRACTION, WORKERS = 64, 0.1, 0.9, 1e-4, 4.5, 0.2, 2
EVAL_BATCHES = (64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class CellSize:
    """A cell's shape: T megabatches of `images` each (90 % train, 10 % validation), `epochs` per megabatch."""

    name: str
    megabatches: int
    images: int
    epochs: int


SIZES = (CellSize("eval-heavy", 4, 500, 2), CellSize("train-heavy", 2, 2000, 4))


@dataclass
class Stopwatch:
    """Seconds per part, the device synchronised around each reading."""

    device: torch.device
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start


@contextmanager
def system_time() -> Iterator[dict[str, float]]:
    """Wall seconds, kernel seconds and minor page faults of this process (and its finished children)."""
    out: dict[str, float] = {}
    before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    start = time.perf_counter()
    yield out
    after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    out["wall"] = time.perf_counter() - start
    out["system"] = sum(a.ru_stime - b.ru_stime for a, b in zip(after, before))
    out["minor_faults"] = sum(a.ru_minflt - b.ru_minflt for a, b in zip(after, before))


# ---- evaluation throughput: every alternative, and almabench's choice ------------------------------------------

def eval_sweep(arch: str, data: DeviceData, device: torch.device, n: int) -> list[dict]:
    """images/s of inference on n test images for each batch size, with and without batch norm folded."""
    torch.manual_seed(0)
    model = build_model(arch, 10, 3, 32).to(device)
    if data.channels_last:
        model = model.to(memory_format=torch.channels_last)
    x, y = data.x_test[:n], data.y_test[:n]
    rows = []
    for folded in (False, True):
        net = inference_model(model, max(n, FOLD_FROM_IMAGES)) if folded else model.eval()
        for batch in EVAL_BATCHES:
            count_with(net, data, x[: 2 * batch], y[: 2 * batch], batch)  # warm-up
            with system_time() as used:
                count_with(net, data, x, y, batch)
            rows.append({"batch": batch, "folded": folded, "img_s": round(n / used["wall"], 1),
                         "system_fraction": round(used["system"] / used["wall"], 3),
                         "minor_faults_per_image": round(used["minor_faults"] / n, 1)})
    return rows


@torch.inference_mode()
def count_with(net: nn.Module, data: DeviceData, x: torch.Tensor, y: torch.Tensor, batch: int) -> int:
    correct = 0
    for start in range(0, len(y), batch):
        correct += int((net(data.normalise(x[start:start + batch])).argmax(1) == y[start:start + batch]).sum())
    return correct


def almabench_eval(arch: str, data: DeviceData, device: torch.device, n: int) -> tuple[int, float]:
    """The batch almabench picks on this machine, and the images/s of its count_correct as a cell calls it."""
    torch.manual_seed(0)
    model = build_model(arch, 10, 3, 32).to(device)
    if data.channels_last:
        model = model.to(memory_format=torch.channels_last)
    batch = eval_batch_size(device, largest_activation_bytes(model, 3, (32, 32), device),
                            memory_reused=device.type == "cpu" and reuse_freed_memory())
    x, y = data.x_test[:n], data.y_test[:n]
    count_correct(model, data, x, y, batch)  # warm-up
    rates = []
    for _ in range(2):
        start = time.perf_counter()
        count_correct(model, data, x, y, batch)
        rates.append(n / (time.perf_counter() - start))
    return batch, round(max(rates), 1)


# ---- the released-style cell ------------------------------------------------------------------------------------

def released_style_cell(root: Path, size: CellSize, arch: str, device: torch.device, work: Path) -> dict:
    """APP over the stream with the released code's tools; returns seconds per part and training images."""
    import torchvision.transforms as T

    from almabench.benchmarks.speed import MEAN, STD, cifar10_any_copy

    watch = Stopwatch(device)
    with watch.part("startup"):
        augment = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                             T.Normalize(MEAN, STD)])
        plain = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
        train_set = cifar10_any_copy(root, train=True, transform=augment)
        train_plain = cifar10_any_copy(root, train=True, transform=plain)
        test_set = cifar10_any_copy(root, train=False, transform=plain)
        torch.manual_seed(init_seed(0, 0))
        model = build_model(arch, 10, 3, 32).to(device)
        torch.save(model.state_dict(), work / "randinit.pt")
    per_train = int(size.images * 0.9)
    n_train = size.megabatches * per_train
    images = 0
    for t in range(1, size.megabatches + 1):
        train_idx = list(range(t * per_train))
        val_idx = list(range(n_train, n_train + t * (size.images - per_train)))
        with watch.part("pruning"):
            sample_idx = train_idx[(t - 1) * per_train:][: int(SAMPLE_FRACTION * size.images)]
            sample = torch.utils.data.Subset(train_set, sample_idx)
            masks = snip_masks_from_disk(arch, work / ("randinit.pt" if t == 1 else f"{t - 1}best.pt"), sample,
                                         app_density(t, size.megabatches, TAU), device)
            apply_prune_hooks(model, masks)
        optimiser = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, list(default_milestones(size.epochs)), 0.1)
        best = -1.0
        for _ in range(size.epochs):
            with watch.part("training"):
                images += train_epoch(model, loader(torch.utils.data.Subset(train_set, train_idx), device, True),
                                      optimiser, device)
                schedule.step()
            with watch.part("validation"):  # the released code validates on augmented images
                val = accuracy_over(model, loader(torch.utils.data.Subset(train_set, val_idx), device), device)
            with watch.part("checkpoint"):
                torch.save({"state_dict": model.state_dict(), "optimizer": optimiser.state_dict()}, work / "last.pt")
                if val > best:
                    best = val
                    shutil.copyfile(work / "last.pt", work / f"{t}best.pt")
        with watch.part("checkpoint"):
            model.load_state_dict(torch.load(work / f"{t}best.pt", map_location=device)["state_dict"])
        with watch.part("test"):
            accuracy_over(model, loader(test_set, device), device)
        with watch.part("gap"):
            accuracy_over(model, loader(torch.utils.data.Subset(train_plain, train_idx), device), device)
            accuracy_over(model, loader(torch.utils.data.Subset(train_plain, val_idx), device), device)
    return {"seconds": watch.seconds, "images": images}


def loader(dataset, device: torch.device, shuffle: bool = False) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=shuffle, num_workers=WORKERS,
                                       pin_memory=device.type == "cuda")


def train_epoch(model: nn.Module, batches, optimiser: torch.optim.Optimizer, device: torch.device) -> int:
    model.train()
    images = 0
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        (logits.argmax(1) == y).sum().item()  # the released code logs a running accuracy every batch
        images += len(y)
    return images


@torch.no_grad()
def accuracy_over(model: nn.Module, batches, device: torch.device) -> float:
    model.eval()
    correct = total = 0
    for x, y in batches:
        correct += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
        total += len(y)
    return 100.0 * correct / max(1, total)


def snip_masks_from_disk(arch: str, path: Path, sample, density: float, device: torch.device) -> dict:
    """SNIP as the released generate_mask.py computes it: a model loaded from disk, |∂L/∂w · w| summed over the
    sample in batches of 100, a global top-k within the current mask."""
    model = build_model(arch, 10, 3, 32).to(device)
    state = torch.load(path, map_location=device)
    state = state.get("state_dict", state)
    old = {k.removesuffix("_mask"): v.bool() for k, v in state.items() if k.endswith("weight_mask")}
    model.load_state_dict({k.replace("weight_orig", "weight"): v for k, v in state.items()
                           if not k.endswith("weight_mask")})
    params = prunable_parameters(model)
    for x, y in torch.utils.data.DataLoader(sample, batch_size=100, num_workers=WORKERS):
        F.cross_entropy(model(x.to(device)), y.to(device)).backward()
    scores = {n: (p.grad * p).abs().detach() for n, p in params.items()}
    current = {n: old.get(n, torch.ones_like(s, dtype=torch.bool)) for n, s in scores.items()}
    return top_k_masks(scores, density, within=current)


def apply_prune_hooks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        module = modules[name.removesuffix(".weight")]
        if prune.is_pruned(module):
            prune.remove(module, "weight")
        prune.custom_from_mask(module, "weight", mask.to(module.weight.device))


# ---- almabench's cell --------------------------------------------------------------------------------------------

def almabench_cell(root: Path, size: CellSize, arch: str, device: torch.device, work: Path) -> dict:
    config = RunConfig(method="app", dataset="cifar10", arch=arch, megabatches=size.megabatches, epochs=size.epochs,
                       seed=0, pruner="snip", tau=TAU, batch_size=BATCH, lr=LR)
    options = RunOptions(device=device.type, data_root=str(root))
    result = run_cell(config, options, checkpoint=work / "cell.pt")
    parts = dict(result["seconds_by_part"])
    parts["startup"] += result["seconds"] - sum(parts.values())  # what the runner spent around the parts
    return {"seconds": parts, "images": sum(s["train_size"] for s in result["steps"]) * size.epochs}


# ---- peak and the whole benchmark --------------------------------------------------------------------------------

def matmul_tflops(device: torch.device, n: int = 2048, repeats: int = 8) -> float:
    """fp32 TFLOP/s of a large matmul on this device and thread count: what the cores can do."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def run_cells(arch: str, device: torch.device, flops_per_image: float) -> list[dict]:
    from almabench.benchmarks.speed import write_synthetic_cifar

    rows = []
    for size in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            root, work = Path(tmp) / "data", Path(tmp) / "work"
            work.mkdir()
            n_train = size.megabatches * size.images
            write_synthetic_cifar(root, n_train=n_train, n_test=10_000)
            load_dataset("cifar10", root)  # the same read for both sides, outside the timing (file cache warm)
            sides = {}
            for side, cell in (("released_style", released_style_cell), ("almabench", almabench_cell)):
                with system_time() as used:
                    out = cell(root, size, arch, device, work)
                total = sum(out["seconds"].values())
                training = out["seconds"]["training"]
                sides[side] = {**{k: round(v, 2) for k, v in out["seconds"].items()}, "total": round(total, 2),
                               "system_fraction": round(used["system"] / used["wall"], 3),
                               "train_tflops": round(flops_per_image * out["images"] / training / 1e12, 4)}
        rows.append({"size": size.name, "arch": arch, "megabatches": size.megabatches, "megabatch_images": size.images,
                     "epochs": size.epochs, **sides,
                     "ratio": round(sides["released_style"]["total"] / sides["almabench"]["total"], 2)})
    return rows


def print_cell_rows(rows: list[dict]) -> None:
    for row in rows:
        print(f"\n{row['arch']} {row['size']}: T = {row['megabatches']} × {row['megabatch_images']} images, "
              f"{row['epochs']} epochs; released-style / almabench = {row['ratio']:.2f}×")
        print(f"  {'seconds':12}" + "".join(f"{p:>11}" for p in (*PARTS, "total")) + f"{'system':>9}{'TFLOP/s':>9}")
        for side in ("released_style", "almabench"):
            s = row[side]
            print(f"  {side:12}" + "".join(f"{s[p]:11.2f}" for p in (*PARTS, "total"))
                  + f"{100 * s['system_fraction']:8.1f}%{s['train_tflops']:9.4f}")


def print_sweep(label: str, rows: list[dict]) -> None:
    print(f"\nevaluation, {label}:  batch " + " ".join(f"{b:>7}" for b in EVAL_BATCHES))
    for folded in (False, True):
        cells = [r for r in rows if r["folded"] == folded]
        print(f"  {'BN folded' if folded else 'as trained':>10} img/s " + " ".join(f"{r['img_s']:7.0f}" for r in cells)
              + "   system " + " ".join(f"{100 * r['system_fraction']:4.1f}%" for r in cells))


def cell_benchmark(arch: str, device: torch.device, data: DeviceData, eval_images: int) -> dict:
    from almabench.benchmarks.speed import train_flops_per_image

    default_alloc = eval_sweep(arch, data, device, eval_images)
    tuned = device.type == "cpu" and reuse_freed_memory()
    tuned_alloc = eval_sweep(arch, data, device, eval_images)
    choice, chosen = almabench_eval(arch, data, device, eval_images)
    best = max([r["img_s"] for r in default_alloc + tuned_alloc] + [chosen])
    print_sweep("glibc's default allocator", default_alloc)
    print_sweep("freed memory reused" if tuned else "allocator left as it is", tuned_alloc)
    print(f"  almabench (count_correct, batch {choice}): {chosen:.0f} img/s = "
          f"{100 * chosen / best:.1f} % of the best measured ({best:.0f} img/s)")
    x = data.normalise(data.x_train[:BATCH]).float().contiguous()
    flops = train_flops_per_image(build_model(arch, 10, 3, 32).to(device), x, data.y_train[:BATCH])
    peak = matmul_tflops(device)
    rows = run_cells(arch, device, flops)
    print_cell_rows(rows)
    print(f"\n  fp32 matmul {2048}²: {peak:.3f} TFLOP/s on these cores; training reaches "
          + ", ".join(f"{r['size']} {r['almabench']['train_tflops']:.3f} (almabench) / "
                      f"{r['released_style']['train_tflops']:.3f} (released-style)" for r in rows))
    for row in rows:
        row.update({"eval_batch_chosen": choice, "eval_img_s_chosen": chosen, "eval_img_s_best": best,
                    "eval_fraction_of_best": round(chosen / best, 3), "matmul_tflops": round(peak, 4),
                    "memory_reused": tuned, "eval_sweep": {"default": default_alloc, "reused": tuned_alloc}})
    return rows
