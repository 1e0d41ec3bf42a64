"""Evaluation speed-ups that must not change a prediction: batch norm folding, the batch rule, the allocator."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn
from torch.fx.experimental.optimization import fuse

from almabench.cell import allocator, inference
from almabench.cell.allocator import reuse_freed_memory
from almabench.cell.inference import (
    CPU_BUDGET_BYTES,
    FOLD_FROM_IMAGES,
    eval_batch_size,
    inference_model,
    largest_activation_bytes,
)
from almabench.cell.models import build_model
from almabench.cell.train import DeviceData, count_correct

CPU = torch.device("cpu")


def model_with_batch_norm_statistics(arch: str = "convnet") -> nn.Module:
    """A model whose batch norms are far from identity, as after training."""
    torch.manual_seed(0)
    model = build_model(arch, 10, 3, 32)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.3, 3.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    return model.eval()


@pytest.mark.parametrize("arch", ["convnet", "resnet20"])
def test_folded_model_predicts_what_the_trained_model_predicts_and_leaves_it_alone(arch):
    model = model_with_batch_norm_statistics(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = inference_model(model, FOLD_FROM_IMAGES)
    assert folded is not model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())  # every BN went into a conv
    x = torch.randn(64, 3, 32, 32)
    with torch.inference_mode():
        expected, got = model(x), folded(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the trained model keeps its BN
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_small_evaluations_and_untraceable_models_use_the_model_as_it_is(monkeypatch):
    traced = []
    monkeypatch.setattr(inference, "fuse", lambda m: traced.append(m) or fuse(m))
    model = model_with_batch_norm_statistics()
    assert inference_model(model, FOLD_FROM_IMAGES - 1) is model

    class DataDependent(nn.Module):  # fx cannot trace a branch on a tensor's value
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            out = self.bn(self.conv(x))
            return out if out.sum() > 0 else -out

    odd = DataDependent().eval()
    assert inference_model(odd, FOLD_FROM_IMAGES) is odd
    assert inference_model(odd, FOLD_FROM_IMAGES) is odd
    assert traced == [odd]  # tried once (the small evaluation never was); the failure is remembered, not retraced


def test_count_correct_with_folding_equals_the_plain_count():
    model = model_with_batch_norm_statistics()
    n = FOLD_FROM_IMAGES + 100
    torch.manual_seed(1)
    data = DeviceData(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), torch.zeros(1, dtype=torch.long),
                      torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (n,)),
                      torch.full((1, 3, 1, 1), 120.0), torch.full((1, 3, 1, 1), 60.0))
    with torch.inference_mode():
        plain = sum(int((model(data.normalise(data.x_test[i:i + 100])).argmax(1) == data.y_test[i:i + 100]).sum())
                    for i in range(0, n, 100))
    assert count_correct(model, data, data.x_test, data.y_test, 256) == plain
    assert count_correct(model, data, data.x_test, data.y_test, 64) == plain


def test_largest_activation_is_counted_from_one_image():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32, 5))
    assert largest_activation_bytes(net, 3, (4, 4), CPU) == 8 * 4 * 4 * 4  # the conv's 8×4×4 fp32 output
    assert largest_activation_bytes(build_model("convnet", 10, 3, 32), 3, (32, 32), CPU) == 32 * 32 * 32 * 4


def test_evaluation_batch_rule():
    convnet = 32 * 32 * 32 * 4  # 128 KiB per image
    assert eval_batch_size(CPU, convnet, memory_reused=True) == 512  # 512 × 128 KiB = the 64 MiB budget
    assert eval_batch_size(CPU, convnet, memory_reused=False) == 64  # 8 MiB
    assert eval_batch_size(CPU, 100, memory_reused=True) == 1024  # capped
    assert eval_batch_size(CPU, CPU_BUDGET_BYTES[True], memory_reused=True) == 32  # floored
    assert eval_batch_size(torch.device("cuda"), convnet, memory_reused=False) == 1024


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_reused_memory_ends_the_page_fault_storm_of_large_evaluation_batches():
    """In a fresh process: minor page faults per image of a batch-512 evaluation, before and after tuning."""
    script = textwrap.dedent("""
        import resource, torch
        from almabench.cell.allocator import reuse_freed_memory
        from almabench.cell.models import build_model
        torch.set_num_threads(1)
        model, x = build_model("convnet", 10, 3, 32).eval(), torch.randn(512, 3, 32, 32)
        def faults():
            with torch.inference_mode():
                model(x)
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                for _ in range(3):
                    model(x)
            return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / (3 * 512)
        untuned = faults()
        print(untuned, reuse_freed_memory(), faults())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    untuned, tuned_ok, tuned = float(out[0]), out[1], float(out[2])
    assert tuned_ok == "True"
    assert untuned > 20  # 512 × 128 KiB activations: each one mapped and zero-filled anew
    assert tuned < 1


class FakeLibc:
    """A C library that records mallopt calls and answers them as told (glibc returns 1 on success, 0 on refusal)."""

    def __init__(self, answers: dict[int, int], glibc: bool = True) -> None:
        self.answers, self.calls = answers, []
        if glibc:
            self.gnu_get_libc_version = lambda: b"2.39"

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answers[param]


@pytest.mark.parametrize("answers, glibc, expected, calls", [
    ({-3: 1, -1: 1}, True, True, [(-3, 1 << 30), (-1, 1 << 30)]),  # M_MMAP_THRESHOLD, then M_TRIM_THRESHOLD: 1 GiB
    ({-3: 1, -1: 0}, True, False, [(-3, 1 << 30), (-1, 1 << 30)]),  # one refusal is a refusal
    ({-3: 0, -1: 1}, True, False, [(-3, 1 << 30)]),
    ({-3: 1, -1: 1}, False, False, []),  # not glibc (musl, macOS): mallopt's numbers mean something else there
])
def test_reuse_freed_memory_tunes_both_thresholds_once(monkeypatch, answers, glibc, expected, calls):
    libc = FakeLibc(answers, glibc)
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: "libc.so.6")
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    reuse_freed_memory.cache_clear()
    try:
        assert reuse_freed_memory() is expected and reuse_freed_memory() is expected
        assert libc.calls == calls  # the second call asked the library nothing
    finally:
        reuse_freed_memory.cache_clear()  # the next caller tunes the real allocator (idempotent)
