"""How many cells can share one GPU: measured from one training step of the cell's model, not guessed.

Small models (ResNet-20 at batch 64) leave most of an H100 idle, so several cells side by side raise the
grid's total throughput; each cell is a separate worker process holding its own copy of the dataset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from almabench.cell.config import RunConfig, RunOptions
from almabench.cell.device import resolve_device
from almabench.cell.models import build_model
from almabench.data import Dataset, load_dataset

CUDA_CONTEXT_BYTES = 600 * 2**20  # what each worker process's CUDA context costs beyond its tensors


def cells_that_fit(free_bytes: int, per_cell_bytes: int, headroom: float = 0.85, cap: int = 8) -> int:
    """Cells that fit into free_bytes with a safety margin; at least 1, at most cap."""
    return max(1, min(cap, int(free_bytes * headroom) // max(1, per_cell_bytes)))


def cell_memory_bytes(config: RunConfig, dataset: Dataset, device: torch.device) -> int:
    """Device memory of one cell: its dataset, the peak of one bf16 training step at its batch size (weights,
    gradients, momentum, activations), two more weight copies (best checkpoint, SNIP's scoring copy), and
    the worker's CUDA context."""
    torch.cuda.synchronize(device)
    start = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    model = build_model(config.arch, dataset.num_classes, dataset.channels, dataset.image_size[0])
    model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks it
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(config.batch_size, dataset.channels, *dataset.image_size, device=device)
    y = torch.randint(0, dataset.num_classes, (config.batch_size,), device=device)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
    loss.backward()
    optimiser.step()
    torch.cuda.synchronize(device)
    step_peak = torch.cuda.max_memory_allocated(device) - start
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    del model, optimiser, x, y, loss
    torch.cuda.empty_cache()
    data_bytes = sum(t.numel() * t.element_size() for t in (dataset.x_train, dataset.y_train, dataset.x_test,
                                                             dataset.y_test))
    return data_bytes + step_peak + 2 * weights + CUDA_CONTEXT_BYTES


def gpu_jobs(configs: list[RunConfig], datasets: dict[str, Dataset], device: torch.device) -> int:
    """How many of these cells to run at once on `device`: sized for the most demanding cell."""
    free, _ = torch.cuda.mem_get_info(device)
    per_cell = max(cell_memory_bytes(c, datasets[c.dataset], device)
                   for c in {(c.arch, c.dataset, c.batch_size): c for c in configs}.values())
    return cells_that_fit(free, per_cell)


def default_jobs(configs: list[RunConfig], options: RunOptions) -> int:
    """Cells at once when --jobs is not given: 1 on a CPU (torch already uses every core), and on a GPU as many
    as fit in its free memory (measured with the grid's most demanding architecture and batch size)."""
    device = resolve_device(options.device)
    if device.type != "cuda" or len(configs) <= 1:
        return 1
    datasets = {name: load_dataset(name, options.data_root, options.download) for name in {c.dataset for c in configs}}
    return min(len(configs), gpu_jobs(configs, datasets, device))
