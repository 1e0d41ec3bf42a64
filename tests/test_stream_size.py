"""stream_images: a smaller stream drawn from the training set, the same images for every method and seed."""

import json

import pytest
import torch
from click.testing import CliRunner

from almabench.cell.stream import balanced_order, make_stream, stream_pool
from almabench.cli import main
from almabench.data import load_dataset


def test_balanced_order_takes_the_rth_image_of_every_class_before_any_r_plus_first():
    labels = torch.tensor([0] * 5 + [1] * 2 + [2] * 10)
    order = balanced_order(labels)
    assert sorted(order.tolist()) == list(range(17))  # every index once
    # two rounds of all three classes, then class 1 has run out: 0 and 2 alternate, then 2 alone
    assert labels[order].tolist() == [0, 1, 2, 0, 1, 2, 0, 2, 0, 2, 0, 2, 2, 2, 2, 2, 2]


@pytest.mark.parametrize("n", [1, 9, 10, 11, 200, 999])
def test_the_first_n_hold_each_class_within_one_image_of_n_over_k(n):
    labels = load_dataset("digits").y_train  # 10 classes, 140-147 images each
    counts = torch.bincount(labels[stream_pool(labels, n)], minlength=10)
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    assert ((counts - n / 10).abs() < 1).all()


def test_every_seed_cuts_the_same_pool_and_only_the_pool_into_megabatches():
    labels = load_dataset("digits").y_train
    pool = stream_pool(labels, 400)
    # pinned: every stream_images cell ever run on digits drew these first images
    assert pool[:12].tolist() == [532, 1290, 370, 1198, 123, 208, 116, 403, 651, 515, 243, 476]
    assert torch.equal(pool, balanced_order(labels)[:400])
    seen = []
    for seed in (0, 1, 2):
        stream = make_stream(len(labels), 4, seed, 0.1, pool=pool)
        assert [(len(m.train), len(m.val)) for m in stream] == [(90, 10)] * 4
        seen.append(sorted(torch.cat([torch.cat([m.train, m.val]) for m in stream]).tolist()))
    assert seen[0] == seen[1] == seen[2] == sorted(pool.tolist())
    first = [m.train.tolist() for m in make_stream(len(labels), 4, 0, 0.1, pool=pool)]
    assert first != [m.train.tolist() for m in make_stream(len(labels), 4, 1, 0.1, pool=pool)]  # seeds still shuffle


def run(args, out):
    return CliRunner().invoke(main, ["run", "--megabatches", "2", "--epochs", "1", "--seeds", "0", "--threads", "1",
                                     *args, "--out", str(out)])


def test_two_cells_differing_only_in_stream_size_have_their_own_files_and_titles(tmp_path):
    out = tmp_path / "out"
    for extra in ([], ["--set", "stream_images=200"]):
        result = run(["--methods", "dense", *extra], out)
        assert result.exit_code == 0, result.output
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    assert len(results) == 2 and results[0]["config_hash"] != results[1]["config_hash"]
    by_size = {r["config"]["stream_images"]: r for r in results}
    assert sum(by_size[200]["steps"][-1][k] for k in ("train_size", "val_size")) == 200  # full replay: all of it
    assert sum(by_size[None]["steps"][-1][k] for k in ("train_size", "val_size")) == 1436  # 1,437 // 2 · 2
    report = CliRunner().invoke(main, ["report", str(out), "--out", str(tmp_path / "report"), "--format", "png"])
    assert report.exit_code == 0, report.output
    titles = [line for line in report.output.splitlines() if line.startswith("==")]
    assert any("stream_images=200" in t for t in titles) and any("stream_images=all" in t for t in titles), titles


def test_dry_run_names_the_stream_size_among_the_departures_from_the_paper(tmp_path):
    result = run(["--dry-run", "--methods", "dense", "--set", "stream_images=300"], tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "stream_images=300" in result.output.split("not the paper's:")[1].splitlines()[0]


@pytest.mark.parametrize("value, message", [
    ("0", "digits: stream_images must be in 1..1,437 (the training images the dataset holds), got 0"),
    ("1438", "digits: stream_images must be in 1..1,437 (the training images the dataset holds), got 1,438"),
    ("4", "digits: stream_images = 4 cut into 2 megabatches trains on 1 image(s) per megabatch, less than one batch "
          "(two images; batch norm cannot train on one); use at least 6"),
    ("1.5", "stream_images must be an integer, got 1.5"),
])
def test_a_stream_size_the_data_cannot_give_stops_in_one_line_before_any_cell(tmp_path, value, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.json").write_bytes(b"{}")
    result = run(["--set", f"stream_images={value}"], out)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert lines[-1] == f"Error: {message}", result.output
    assert [p.name for p in out.iterdir()] == ["keep.json"] and (out / "keep.json").read_bytes() == b"{}"
