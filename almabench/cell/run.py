"""One cell of the grid, end to end: data -> stream -> model -> for each megabatch: method, train, evaluate."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from almabench.cell.allocator import reuse_freed_memory
from almabench.cell.checkpoint import CellCheckpoint
from almabench.cell.config import RunConfig, RunOptions
from almabench.cell.device import resolve_device
from almabench.cell.inference import eval_batch_size, largest_activation_bytes
from almabench.cell.models import build_model, init_seed
from almabench.cell.protocol import PROTOCOLS
from almabench.cell.sparsity import Masks, prunable_parameters
from almabench.cell.stream import check_stream, make_stream, step_data, stream_pool
from almabench.cell.train import (
    CellState,
    DeviceData,
    TrainStats,
    accuracy,
    count_correct,
    new_optimiser,
    synchronize,
    train_step,
)
from almabench.data import Dataset, load_dataset
from almabench.errors import AlmabenchError
from almabench.extend.plugins import load_for_cell
from almabench.methods import METHODS, Method, StepContext, build_method
from almabench.results.provenance import environment, with_plugins
from almabench.results.validate import SCHEMA_VERSION


def layer_flops(model: nn.Module, channels: int, size: tuple[int, int], device: torch.device) -> dict[str, int]:
    """FLOPs (2 × multiply-accumulates) of one image through each Conv2d and Linear layer, by weight name."""
    flops: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            def hook(m, inputs, out, key=f"{name}.weight"):
                flops[key] = 2 * out[0].numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(module, nn.Linear):
            def hook(m, inputs, out, key=f"{name}.weight"):
                flops[key] = 2 * m.in_features * m.out_features
        else:
            continue
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        model(torch.zeros(1, channels, *size, device=device))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return flops


def run_cell(config: RunConfig, options: RunOptions = RunOptions(), progress=None, checkpoint: Path | None = None,
             on_resume: Callable[[int], None] | None = None, method: Method | None = None) -> dict[str, Any]:
    """Run one cell and return its result (the JSON document described in the README).

    With `checkpoint`, the cell's state is saved there after every megabatch, and a run that finds a
    checkpoint of the same cell (same config, code, device and data) resumes after its last finished step
    (calling on_resume(steps done)); the result is the same as an uninterrupted run's. The caller deletes
    the checkpoint once the result is stored. `method`: the instance to run (default: a new one of config.method;
    the contract check, almabench.extend.contract, passes one that watches it).

    Cells sent to threads of one process (a Dask worker with several threads) run one at a time: torch.fx,
    which folds batch norm for evaluation (almabench.cell.inference), patches nn.Module.__call__ for the whole
    process while it traces, so another thread's forward pass would fail inside the trace; the global RNG
    that seeds the init and torch's thread count are per process too. Processes (loky, `--nthreads 1`
    Dask workers) are unaffected.
    """
    with _ONE_CELL_PER_PROCESS:
        return _run_cell(config, options, progress, checkpoint, on_resume, method)


def _run_cell(config: RunConfig, options: RunOptions, progress, checkpoint: Path | None,
              on_resume: Callable[[int], None] | None, method: Method | None) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC)
    wall = time.perf_counter()
    load_for_cell(config, options.plugins)  # in a worker: the parent's --plugin files, before any name is looked up
    if options.threads > 0:
        torch.set_num_threads(options.threads)
    device = resolve_device(options.device)
    memory_reused = device.type == "cpu" and reuse_freed_memory()
    dataset = load_dataset(config.dataset, options.data_root, options.download)
    config = resolve_for(config, dataset)  # the grid passes resolved configs; a direct call may not
    data = DeviceData.from_dataset(dataset, device, options.precision)
    protocol = PROTOCOLS.get(config.protocol)
    check_stream(dataset.n_train, config.megabatches, config.val_fraction, config.stream_images)
    stream = make_stream(dataset.n_train, config.megabatches, config.seed, config.val_fraction, protocol.layout,
                         pool=stream_pool(dataset.y_train, config.stream_images))
    method = method if method is not None else build_method(config)
    crop_padding = config.crop_padding

    def new_model() -> nn.Module:
        return build_model(config.arch, dataset.num_classes, dataset.channels, dataset.image_size[0])

    torch.manual_seed(init_seed(config.seed, 0))  # the global RNG: one cell per process at a time (run_cell)
    model = new_model().to(device)
    if data.channels_last:
        model = model.to(memory_format=torch.channels_last)
    masks = Masks(prunable_parameters(model, config.prune_linear))
    flops = layer_flops(model, dataset.channels, dataset.image_size, device)
    params_total = sum(p.numel() for p in model.parameters())
    eval_batch = options.eval_batch_size or eval_batch_size(
        device, largest_activation_bytes(model, dataset.channels, dataset.image_size, device), memory_reused)
    cell = CellState(
        config, model, masks, data, method,
        train_generator=torch.Generator(device=device).manual_seed(config.seed),
        method_generator=torch.Generator().manual_seed(config.seed + 1),
        crop_padding=crop_padding,
        optimiser=new_optimiser(model, config) if protocol.carry_optimiser else None,  # else: new at every step
        step_model=torch.compile(model) if options.compile else None,  # type: ignore[arg-type]  # a module's wrapper
        eval_batch_size=eval_batch,
    )

    steps: list[dict[str, Any]] = []
    env = with_plugins(environment(device), config)  # git is asked once per cell
    saver = CellCheckpoint(checkpoint, config, options, device, dataset.fingerprint, env) if checkpoint else None
    earlier_seconds = 0.0  # spent before a resume
    if saver is not None and (state := saver.load()) is not None:
        steps, started, earlier_seconds = saver.restore(state, cell)
        if on_resume is not None:
            on_resume(len(steps))
    startup_seconds, checkpoint_seconds = time.perf_counter() - wall, 0.0
    for t in range(len(steps) + 1, config.megabatches + 1):
        cell.step = t
        indices = step_data(stream, t, config.replay)
        ctx = StepContext(t, config, model, masks, data, stream, indices, cell.method_generator, crop_padding,
                          new_model=new_model)
        t0 = time.perf_counter()
        method.before_step(ctx)
        synchronize(device)
        prune_seconds = time.perf_counter() - t0
        stats = train_step(cell, indices.train, indices.val)
        steps.append(evaluate_step(cell, ctx, stats, flops, params_total, prune_seconds, time.perf_counter() - t0))
        if saver is not None:
            t1 = time.perf_counter()
            saver.save(cell, steps, started, earlier_seconds + t1 - wall)
            checkpoint_seconds += time.perf_counter() - t1
        if progress is not None:
            progress(steps[-1])

    return {
        "schema_version": SCHEMA_VERSION,
        "status": "ok",
        "config_hash": config.hash(),
        "config": config.to_dict(),
        "steps": steps,
        **summarise(steps),
        "test_size": len(data.y_test),
        "params_total": params_total,
        "prunable_total": masks.total,
        "flops_dense": sum(flops.values()),
        **({"method_settings": method.setting_values()} if method.settings else {}),
        "data": dataset.describe(),
        "environment": {**env, "precision": "bf16" if data.autocast_dtype else "fp32",
                        "channels_last": data.channels_last,
                        "compile": options.compile, "eval_batch_size": eval_batch, "memory_reused": memory_reused},
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(earlier_seconds + time.perf_counter() - wall, 3),
        "seconds_by_part": seconds_by_part(steps, startup_seconds, checkpoint_seconds),
    }


def seconds_by_part(steps: list[dict[str, Any]], startup: float, checkpoint: float) -> dict[str, float]:
    """Where the cell's time went: startup (data, model, resume) and checkpoints of this process, the rest summed
    over the step records (a resumed cell's earlier steps included). Whatever is left of `seconds` is the
    runner's: result and progress bookkeeping."""
    def total(key: str) -> float:
        return sum(s.get(key, 0.0) for s in steps)

    parts = {"startup": startup, "pruning": total("prune_seconds"),
             "training": total("train_seconds") - total("validation_seconds"),
             "validation": total("validation_seconds"),
             "gap": total("gap_seconds"), "test": total("test_seconds"), "checkpoint": checkpoint}
    return {k: round(v, 3) for k, v in parts.items()}


def resolve_for(config: RunConfig, dataset: Dataset) -> RunConfig:
    """The config with the dataset's augmentation, the method's scope and the epochs' milestones wherever the user
    left them unset."""
    return config.resolve(dataset.flip, dataset.crop_padding, scope=METHODS.get(config.method).default_scope)


def summarise(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's headline numbers from its step records. CER is a count: Σ_t misclassified test images."""
    return {
        "final_test_accuracy": steps[-1]["test_accuracy"],
        "cer": sum(s["test_errors"] for s in steps),
        "final_density": steps[-1]["density"],
        "final_gap": steps[-1]["gap"],
        "mean_gap": sum(s["gap"] for s in steps) / len(steps),
    }


def evaluate_step(cell: CellState, ctx: StepContext, stats: TrainStats, flops: dict[str, int], params_total: int,
                  prune_seconds: float, seconds: float) -> dict[str, Any]:
    """The record of step t: accuracies of the kept checkpoint, density measured from the weights, costs.

    The gap is train_accuracy − val_accuracy. Under the paper's protocol both are measured after the step, in
    eval mode, on the replay set's train and validation parts; under the released one they are what its log
    holds for the kept epoch: the running accuracy of its training batches and its (augmented) validation.
    """
    t, config, model, masks, data, indices = ctx.step, cell.config, cell.model, cell.masks, cell.data, ctx.step_data
    eval_batch_size = cell.eval_batch_size
    t0 = time.perf_counter()
    test_correct = count_correct(model, data, data.x_test, data.y_test, eval_batch_size)  # int: synchronised
    t1 = time.perf_counter()
    if PROTOCOLS.get(config.protocol).gap == "running":
        if stats.best_running_accuracy is None:
            raise AlmabenchError(f"protocol {config.protocol}: its gap needs the running accuracy, not tracked")
        train_acc, val_acc = stats.best_running_accuracy, stats.best_val_accuracy
    else:
        train_acc = accuracy(model, data, data.x_train[indices.train], data.y_train[indices.train], eval_batch_size)
        val_acc = accuracy(model, data, data.x_train[indices.val], data.y_train[indices.val], eval_batch_size)
    t2 = time.perf_counter()
    layer_density = masks.layer_density()
    pruned = sum(round((1 - d) * masks.params[n].numel()) for n, d in layer_density.items())
    flops_remaining = sum(f * layer_density.get(name, 1.0) for name, f in flops.items())
    n_test = len(data.y_test)
    return {
        "step": t,
        "test_accuracy": 100.0 * test_correct / n_test,
        "test_errors": n_test - test_correct,
        "train_accuracy": train_acc,
        "val_accuracy": val_acc,
        "gap": train_acc - val_acc,
        "density": masks.density(),
        "target_density": cell.method.target_density(t, config),
        "layer_density": layer_density,
        "params_remaining": params_total - pruned,
        "flops_remaining": int(round(flops_remaining)),
        "train_size": len(indices.train),
        "val_size": len(indices.val),
        "sample_size": 0 if ctx.sample_indices is None else len(ctx.sample_indices),
        "best_epoch": stats.best_epoch,
        "prune_seconds": round(prune_seconds, 4),
        "train_seconds": round(stats.seconds, 4),
        "validation_seconds": round(stats.validation_seconds, 4),
        "test_seconds": round(t1 - t0, 4),
        "gap_seconds": round(t2 - t1, 4),
        "seconds": round(seconds + t2 - t0, 4),
        "images_per_second": stats.images_per_second,
        **cell.method.step_record(),
    }


_ONE_CELL_PER_PROCESS = threading.Lock()
