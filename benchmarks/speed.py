"""Training throughput: almabench's device-resident trainer vs a loop written the way the released APP code works.

Both train the same model (same init, same masks at 80 % density) on the same CIFAR-shaped data for the same
number of SGD steps, in one process, alternating A/B rounds so that machine noise hits both alike:

  (a) almabench: uint8 data on the device, index gather, crop/flip/normalise vectorised on the device, masks
      re-applied with one foreach multiply; channels_last (CUDA, and CPU for 32 px); bf16 autocast on CUDA;
  (b) reference: torchvision's CIFAR10 dataset, PIL transforms (RandomCrop(32, 4), RandomHorizontalFlip,
      ToTensor, Normalize), a DataLoader with workers, fp32, masks as torch.nn.utils.prune forward hooks.

It prints images/s for each, the ratio, achieved TFLOP/s (model FLOPs counted with torch.utils.flop_counter)
and, on a known GPU, the fraction of its bf16 dense peak; then the cost of one pruning step (SNIP on π_t and a
global top-k) as a fraction of a megabatch's training at the paper's settings.

    python benchmarks/speed.py --device cpu --models convnet,resnet20 --batch-sizes 64 --json speed.json

With --cell, the whole cell instead (benchmarks/cell_speed.py): almabench's run_cell against a released-style
cell at an evaluation-heavy and a training-heavy size, each split into start-up, pruning, training,
validation, gap, test and checkpoints, after a sweep of evaluation settings:

    python benchmarks/speed.py --cell --device cpu --json cell.json
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from almabench.cell.models import build_model
from almabench.cell.sparsity import PRUNERS, Masks, prunable_parameters, top_k_masks
from almabench.cell.train import DeviceData, synchronize, train_batches
from almabench.data.cifar import _cifar_layouts, read_cifar

# Dense bf16 tensor-core peaks (no sparsity), most specific name first: an H100 PCIe is not an H100 SXM.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0),
                    ("A100", 312.0), ("L40S", 362.0), ("A10G", 70.0))
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def write_synthetic_cifar(root: Path, n_train: int = 50_000, n_test: int = 10_000, seed: int = 0) -> None:
    """CIFAR-10's on-disk layout with random pixels: the speed of a step does not depend on the content.
    n_train must be a multiple of 5 (five training files); every class appears in the training set."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {**{f"data_batch_{i}": n_train // 5 for i in range(1, 6)}, "test_batch": n_test}
    for name, size in sizes.items():
        labels = rng.permutation(np.arange(size) % 10).tolist()
        entry = {"data": rng.integers(0, 256, (size, 3072), dtype=np.uint8), "labels": labels}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)


def cifar10_any_copy(root: Path, train: bool, transform):
    """torchvision's CIFAR10 over any copy in its layout: its md5 check would reject synthetic data."""
    from torchvision.datasets import CIFAR10

    class CIFAR10AnyCopy(CIFAR10):
        def _check_integrity(self) -> bool:
            return True

        def _load_meta(self) -> None:
            self.classes = [str(i) for i in range(10)]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return CIFAR10AnyCopy(str(root), train=train, transform=transform)


def reference_loader(root: Path, batch_size: int, workers: int, device: torch.device):
    """The released code's input pipeline: torchvision dataset + PIL transforms + DataLoader."""
    import torchvision.transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(MEAN, STD)])
    dataset = cifar10_any_copy(root, True, transform)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       pin_memory=device.type == "cuda", drop_last=True,
                                       persistent_workers=workers > 0)


def reference_steps(model, optimiser, loader_iter, steps: int, device: torch.device) -> None:
    model.train()
    for _ in range(steps):
        x, y = next(loader_iter)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def endless(loader):
    while True:
        yield from loader


def prune_like_released(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """torch.nn.utils.prune custom masks: weight = weight_orig * weight_mask recomputed in every forward."""
    import torch.nn.utils.prune as prune

    modules = dict(model.named_modules())
    for name, mask in masks.items():
        prune.custom_from_mask(modules[name.removesuffix(".weight")], "weight", mask)


def train_flops_per_image(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Forward + backward FLOPs of one training step, per image."""
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x)


def bench_one(arch: str, batch_size: int, device: torch.device, data: DeviceData, root: Path, args) -> dict:
    torch.manual_seed(0)
    base = build_model(arch, 10, 3, 32)
    initial_masks = top_k_masks({n: p.abs() for n, p in prunable_parameters(base).items()}, 0.8)

    ours = build_model(arch, 10, 3, 32).to(device)
    ours.load_state_dict(base.state_dict())
    if data.channels_last:
        ours = ours.to(memory_format=torch.channels_last)
    masks = Masks(prunable_parameters(ours))
    masks.set(initial_masks)
    ours_opt = torch.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    ours_step = torch.compile(ours) if args.compile else ours
    generator = torch.Generator(device=device).manual_seed(0)

    ref = build_model(arch, 10, 3, 32)
    ref.load_state_dict(base.state_dict())
    prune_like_released(ref, initial_masks)
    ref = ref.to(device)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    ref_iter = iter(endless(reference_loader(root, batch_size, args.reference_workers, device)))

    n = data.x_train.shape[0]
    if batch_size > n:
        raise SystemExit(f"batch {batch_size} is larger than the {n} training images")

    def ours_steps(steps: int) -> None:
        """Exactly `steps` full batches, epoch after epoch as the reference's DataLoader (drop_last) draws them."""
        epochs = [torch.randperm(n, generator=generator, device=device) for _ in range(-(-steps // (n // batch_size)))]
        batches = [b for epoch in epochs for b in epoch.split(batch_size) if len(b) == batch_size][:steps]
        train_batches(ours_step, masks, data, batches, ours_opt, 4, True, generator)

    def timed(fn, steps: int) -> float:
        synchronize(device)
        start = time.perf_counter()
        fn(steps)
        synchronize(device)
        return steps * batch_size / (time.perf_counter() - start)

    ours_steps(args.warmup)  # compile, cudnn autotune, allocator, DataLoader workers start outside the timing
    reference_steps(ref, ref_opt, ref_iter, args.warmup, device)
    ours_rates, ref_rates = [], []
    for _ in range(args.rounds):
        ours_rates.append(timed(ours_steps, args.steps))
        ref_rates.append(timed(lambda s: reference_steps(ref, ref_opt, ref_iter, s, device), args.steps))
    ours_img_s, ref_img_s = statistics.median(ours_rates), statistics.median(ref_rates)

    x = data.normalise(data.x_train[:batch_size])
    flops = train_flops_per_image(build_model(arch, 10, 3, 32).to(device), x.float().contiguous(),
                                  data.y_train[:batch_size])
    tflops = flops * ours_img_s / 1e12
    row = {"model": arch, "batch_size": batch_size, "device": device_name(device),
           "almabench_img_s": round(ours_img_s, 1), "reference_img_s": round(ref_img_s, 1),
           "ratio": round(ours_img_s / ref_img_s, 2), "tflops": round(tflops, 4),
           "train_gflop_per_image": round(flops / 1e9, 4), "rounds": args.rounds, "steps_per_round": args.steps,
           "reference_workers": args.reference_workers, "compile": args.compile,
           "precision": "bf16" if data.autocast_dtype else "fp32"}
    peak = peak_tflops(device)
    if peak:
        row["fraction_of_bf16_peak"] = round(tflops / peak, 4)
    row.update(prune_cost(arch, device, data, ours_img_s, args))
    row["paper_short_grid_hours"] = round(PAPER_SHORT_CELLS * PAPER_SHORT_PASSES_PER_CELL / ours_img_s / 3600, 1)
    return row


def prune_cost(arch: str, device: torch.device, data: DeviceData, img_s: float, args) -> dict:
    """Seconds of one APP pruning step (SNIP on π_t, global top-k) against a megabatch's training time at the
    paper's CIFAR settings: |π_t| = 1,250, 50 epochs over the replay set (5,625·t training images at step t)."""
    torch.manual_seed(0)
    model = build_model(arch, 10, 3, 32).to(device)
    if data.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = prunable_parameters(model)
    idx = torch.arange(min(1250, data.x_train.shape[0]), device=device)
    images, labels = data.normalise(data.x_train[idx]), data.y_train[idx]
    timings = []
    for _ in range(2):  # the first includes one-off allocation
        synchronize(device)
        start = time.perf_counter()
        scores = PRUNERS.get("snip")(model, params, images, labels, None)
        top_k_masks(scores, 0.8)
        synchronize(device)
        timings.append(time.perf_counter() - start)
    seconds = min(timings)
    first_step = 50 * 5625 / img_s
    mean_step = 50 * 5625 * 4.5 / img_s  # mean over t = 1..8 of 5,625·t
    return {"prune_seconds": round(seconds, 3), "prune_fraction_step1": round(seconds / first_step, 5),
            "prune_fraction_mean_step": round(seconds / mean_step, 5)}


def largest_batch(arch: str, device: torch.device, limit: int = 16384) -> int:
    """The largest power-of-two batch (from 128) at which both sides can train: probed with the reference's
    fp32 step (fp32 activations are twice bf16's), with the other side's model and momentum also resident."""
    best = 64
    batch = 128
    resident = build_model(arch, 10, 3, 32).to(device)  # stands in for the other side's weights and state
    resident_state = [torch.zeros_like(p) for p in resident.parameters() for _ in range(2)]
    while batch <= limit:
        try:
            model = build_model(arch, 10, 3, 32).to(device)
            x = torch.randn(batch, 3, 32, 32, device=device)
            loss = F.cross_entropy(model(x), torch.zeros(batch, dtype=torch.long, device=device))
            loss.backward()
            torch.cuda.synchronize(device)
            best = batch
            batch *= 2
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            model = x = loss = None
            torch.cuda.empty_cache()
    del resident, resident_state
    torch.cuda.empty_cache()
    return best


# The paper's short grid: CIFAR-10 and -100 × dense/OSP/APP × 3 seeds, T = 8, 50 epochs over the replay set
# (5,625·t training images at step t): 50 · 5,625 · (1 + … + 8) image-passes per cell.
PAPER_SHORT_CELLS = 2 * 3 * 3
PAPER_SHORT_PASSES_PER_CELL = 50 * 5625 * 36


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


def write_rows(path: str, rows: list[dict]) -> None:
    """Rewritten after every row, so that a run cut off by a time limit (a lent GPU's) keeps what it measured."""
    if path:
        Path(path).write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--cell", action="store_true", help="benchmark whole cells (start-up to checkpoints)")
    parser.add_argument("--models", default="", help="comma-separated (default: convnet,resnet20; --cell: convnet)")
    parser.add_argument("--eval-images", type=int, default=4096, help="--cell: test images per evaluation timing")
    parser.add_argument("--batch-sizes", default="64", help="comma-separated; 'max': the largest that fits (CUDA)")
    parser.add_argument("--steps", type=int, default=30, help="SGD steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating A/B rounds; the median is reported")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reference-workers", type=int, default=2, help="DataLoader workers (released default: 2)")
    parser.add_argument("--compile", action="store_true", help="torch.compile almabench's model")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="almabench's precision (auto: bf16 on CUDA, fp32 on CPU); the reference is fp32")
    parser.add_argument("--data-root", default="", help="a CIFAR-10 folder; default: synthetic CIFAR-shaped data")
    parser.add_argument("--json", default="", help="write the rows to this file")
    args = parser.parse_args()

    device = torch.device(args.device)
    args.models = args.models or ("convnet" if args.cell else "convnet,resnet20")
    if "max" in args.batch_sizes and device.type != "cuda":
        parser.error("--batch-sizes max needs --device cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data_root) if args.data_root else Path(tmp)
        if not args.data_root:
            write_synthetic_cifar(root)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = read_cifar(_cifar_layouts()["cifar10"], root)
        data = DeviceData.from_dataset(dataset, device, args.precision)
        rows = []
        if args.cell:
            from almabench.benchmarks.cell_speed import cell_benchmark

            print(f"{device_name(device)}, torch {torch.__version__}")
            for arch in args.models.split(","):
                rows += cell_benchmark(arch, device, data, args.eval_images)
                write_rows(args.json, rows)
        for arch in ([] if args.cell else args.models.split(",")):
            sizes = [largest_batch(arch, device) if b == "max" else int(b) for b in args.batch_sizes.split(",")]
            for batch_size in sizes:
                row = bench_one(arch, batch_size, device, data, root, args)
                rows.append(row)
                write_rows(args.json, rows)
                print(f"{arch:10} bs {batch_size:5}  almabench {row['almabench_img_s']:9.1f} img/s  "
                      f"reference {row['reference_img_s']:9.1f} img/s  ratio {row['ratio']:5.2f}x  "
                      f"{row['tflops']:.3f} TFLOP/s"
                      + (f" ({100 * row['fraction_of_bf16_peak']:.1f} % of bf16 peak)"
                         if "fraction_of_bf16_peak" in row else "")
                      + f"  pruning {100 * row['prune_fraction_step1']:.3f} % of step 1"
                      + f"  paper short grid ≈ {row['paper_short_grid_hours']} h at this rate", flush=True)


if __name__ == "__main__":
    main()
