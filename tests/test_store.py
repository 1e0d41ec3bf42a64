"""The store's small parts, one by one and fast (the mutation pass over store.py runs these): where a cell's
temp files and checkpoint live, what a failure record may hold, how a corrupt file is moved aside, and which
checkpoint files are accepted. The larger paths through them (a resume, a full disk) are in test_grid and
test_robustness."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_untrusted_results import DOCS, GOOD

from almabench.cell.config import RunConfig
from almabench.results.store import (
    CHECKPOINT_DIR,
    checkpoint_path,
    checkpoint_progress,
    json_safe,
    load_checkpoint,
    move_aside,
    peek_checkpoint,
    result_path,
    result_state,
    save_checkpoint,
    temp_files,
)

APP = GOOD["app"]  # a committed result, valid by construction


def config(seed: int = 0) -> RunConfig:
    return RunConfig(method="app", dataset="digits", arch="mlp", megabatches=3, seed=seed)


def test_a_cells_checkpoint_lives_in_the_hidden_checkpoint_folder_under_its_hash(tmp_path):
    cell = config()
    assert CHECKPOINT_DIR == ".checkpoints"
    assert checkpoint_path(tmp_path, cell) == tmp_path / ".checkpoints" / f"{cell.hash()}.pt"
    assert checkpoint_path(str(tmp_path), cell) == checkpoint_path(tmp_path, cell)


def test_temp_files_are_this_cells_own_beside_its_result_and_its_checkpoint_and_no_others(tmp_path):
    cell, other = config(0), config(1)
    (tmp_path / CHECKPOINT_DIR).mkdir()
    mine = [tmp_path / f".{cell.hash()}.0a1b2c3d.tmp", tmp_path / CHECKPOINT_DIR / f".{cell.hash()}.ffff0000.tmp"]
    theirs = [tmp_path / f".{other.hash()}.0a1b2c3d.tmp", tmp_path / f"{cell.hash()}.json",
              tmp_path / f".{cell.hash()}.0a1b2c3d.tmp.corrupt", tmp_path / CHECKPOINT_DIR / f"{cell.hash()}.pt"]
    for path in (*mine, *theirs):
        path.write_text("x")
    assert sorted(temp_files(tmp_path, cell)) == sorted(mine)
    assert temp_files(str(tmp_path), other) == [theirs[0]]


def test_json_safe_names_every_float_json_cannot_hold_at_any_depth_and_keeps_the_rest():
    value = {"tau": math.inf, "grid": [1.5, -math.inf, (math.nan, 2)], "name": "app", "n": 3, "ok": True,
             "none": None, "nested": {"lr": 0.1, "bad": [math.inf]}}
    safe = json_safe(value)
    assert safe == {"tau": "inf", "grid": [1.5, "-inf", ["nan", 2]], "name": "app", "n": 3, "ok": True,
                    "none": None, "nested": {"lr": 0.1, "bad": ["inf"]}}
    json.dumps(safe, allow_nan=False)  # writable as strict JSON
    assert json_safe(0.25) == 0.25 and json_safe("inf") == "inf"


def test_a_result_filed_under_another_cells_name_is_corrupt_and_under_its_own_is_done(tmp_path):
    text = (DOCS / f"{APP}.json").read_text()
    (tmp_path / f"{APP}.json").write_text(text)
    (tmp_path / "0123456789abcdef.json").write_text(text)
    assert result_state(tmp_path / f"{APP}.json") == ("done", "fp32")
    state, detail = result_state(tmp_path / "0123456789abcdef.json")
    assert (state, detail) == ("corrupt", f"its config_hash '{APP}' does not match its file name")


def test_a_failure_record_is_failed_with_its_error_and_an_unknown_status_is_corrupt(tmp_path):
    cell = config()
    path = result_path(tmp_path, cell)
    path.write_text(json.dumps({"status": "failed", "config_hash": cell.hash(), "error": "boom"}))
    assert result_state(path) == ("failed", "boom")
    path.write_text(json.dumps({"status": "odd", "config_hash": cell.hash()}))
    assert result_state(path) == ("corrupt", "unknown status 'odd'")
    assert result_state(tmp_path / "missing.json") == ("missing", "")


def test_move_aside_numbers_each_further_corrupt_copy_and_deletes_nothing(tmp_path):
    path = tmp_path / "a.json"
    targets = []
    for text in ("one", "two", "three"):
        path.write_text(text)
        targets.append(move_aside(path))
    assert [t.name for t in targets] == ["a.json.corrupt", "a.json.corrupt.1", "a.json.corrupt.2"]
    assert [t.read_text() for t in targets] == ["one", "two", "three"]
    assert not path.exists()


def test_a_checkpoint_reads_back_with_its_format_and_its_progress(tmp_path):
    cell = config()
    path = checkpoint_path(tmp_path, cell)
    key = json.dumps({"config": cell.to_dict()})
    save_checkpoint(path, {"step": 2, "key": key, "weights": torch.arange(3.0)})
    state = load_checkpoint(path)
    assert state["format"] == 1 and state["step"] == 2 and state["key"] == key
    assert torch.equal(state["weights"], torch.arange(3.0))
    assert torch.equal(peek_checkpoint(path)["weights"], torch.arange(3.0))
    assert checkpoint_progress(path) == (2, 3)
    assert load_checkpoint(tmp_path / "none.pt") is None and peek_checkpoint(tmp_path / "none.pt") is None


@pytest.mark.parametrize("content", [{"format": 2, "step": 1}, {"step": 1}, [1, 2]], ids=["newer", "none", "list"])
def test_a_checkpoint_of_another_format_is_refused_by_the_loader_and_ignored_by_the_peek(tmp_path, content):
    path = tmp_path / "c.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match="^not an almabench checkpoint of this version$"):
        load_checkpoint(path)
    assert peek_checkpoint(path) is None and checkpoint_progress(path) is None


def test_a_checkpoint_that_is_not_a_torch_file_is_unreadable(tmp_path):
    path = tmp_path / "c.pt"
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"^unreadable \("):
        load_checkpoint(path)
    assert peek_checkpoint(path) is None and checkpoint_progress(path) is None


class Pickled:
    """Not a tensor, string or number: loading it would run pickle's code, which no checkpoint needs."""


def test_a_checkpoint_that_needs_unpickling_is_refused_never_loaded(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"format": 1, "step": 1, "key": "{}", "extra": Pickled()}, path)
    with pytest.raises(ValueError, match=r"^unreadable \(UnpicklingError\)$"):
        load_checkpoint(path)
    assert peek_checkpoint(path) is None
