"""`almabench new-method` (issue 29 §3): the package it writes installs without a network, appears in `almabench
list` with its package and version, runs beside app and dense through loky workers, and is in the report and
a parquet export. Commands run in fresh processes: entry points are read once per process."""

from __future__ import annotations

import hashlib
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from almabench.cli import main
from almabench.extend import plugins
from almabench.extend.contract import check_method

NAME = "scaffolded-test"
PACKAGE = f"almabench-{NAME}"


def almabench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "almabench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def package_fingerprint(folder: Path) -> str:
    """almabench.extend.plugins.source_fingerprint of a package: its .py files, by path relative to it."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(f"{path.relative_to(folder).as_posix()}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture
def installed(tmp_path):
    """The scaffold's package, written into tmp_path and installed editable (no network, no build isolation)
    into this test environment; uninstalled afterwards, whatever happens."""
    result = CliRunner().invoke(main, ["new-method", NAME, "--dest", str(tmp_path)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / PACKAGE
    assert result.output.splitlines()[0] == f"wrote {folder}/ (the method: {folder}/scaffolded_test/method.py); next:"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    install = subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", "-e", str(folder)],
                             capture_output=True, text=True, timeout=300)
    try:
        assert install.returncode == 0, install.stderr
        yield folder
    finally:
        subprocess.run([*pip, "uninstall", "-y", PACKAGE], capture_output=True, timeout=300)
    listed = subprocess.run([*pip, "show", PACKAGE], capture_output=True, text=True, timeout=300)
    assert listed.returncode == 1  # gone again


def test_a_scaffolded_package_installs_lists_runs_beside_app_and_dense_and_reports(installed, tmp_path):
    listed = almabench("list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert (f"  {NAME:14} magnitude pruning to APP's schedule before each megabatch [plugin: {PACKAGE} 0.1.0]"
            in listed.stdout.splitlines())

    out = tmp_path / "results"
    run = almabench("run", "--methods", f"{NAME},app,dense", "--jobs", "2", "--threads", "1", "--megabatches", "2",
                    "--epochs", "1", "--set", "stream_images=300", "--out", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "3 ran, 0 already done, 0 failed" in run.stdout
    docs = {d["config"]["method"]: d for d in (json.loads(p.read_text()) for p in out.glob("*.json"))}
    assert sorted(docs) == ["app", "dense", NAME]
    entry = {"origin": "entry point", "from": f"{NAME} = scaffolded_test.method:ScaffoldedTest", "package": PACKAGE,
             "version": "0.1.0", "fingerprint": package_fingerprint(installed / "scaffolded_test")}
    assert docs[NAME]["environment"]["plugins"] == {"method": {"name": NAME, **entry}, "imported": [entry]}
    assert docs["app"]["environment"]["plugins"] == {"imported": [entry]}  # an installed plugin ran beside it
    # the scaffold's example prunes to APP's schedule: the same densities as app's cell
    assert [s["density"] for s in docs[NAME]["steps"]] == [s["density"] for s in docs["app"]["steps"]]

    report = almabench("report", str(out), "--out", str(tmp_path / "report"), "--format", "png", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    tables = (tmp_path / "report" / "tables.md").read_text()
    assert f"app - {NAME}" in tables and f"| {NAME} " in tables

    export = almabench("export", str(out), "--to", "parquet", "--dest", str(tmp_path / "export"), cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    pandas = pytest.importorskip("pandas")
    cells = pandas.read_parquet(tmp_path / "export" / "cells.parquet")
    assert sorted(cells["method"]) == ["app", "dense", NAME]
    steps = pandas.read_parquet(tmp_path / "export" / "steps.parquet")
    assert steps[steps["config_hash"] == docs[NAME]["config_hash"]]["step"].tolist() == [1, 2]



def test_the_scaffold_s_own_test_runs_the_contract_check_and_passes(installed, monkeypatch):
    # in this process (a second interpreter would cost seconds): the editable install's import hook is set up at
    # start-up, so the package's folder goes on sys.path, and the registries read the entry points afresh
    monkeypatch.syspath_prepend(str(installed))
    plugins.forget()
    try:
        namespace = runpy.run_path(str(installed / "tests" / "test_contract.py"))
        namespace["test_scaffolded_test_keeps_the_contract"]()  # asserts report.ok, printing the report if not
        report = check_method(NAME)
        assert report.origin == f"entry point {NAME} = scaffolded_test.method:ScaffoldedTest of package {PACKAGE} 0.1.0"
        assert [c.status for c in report.checks] == ["pass"] * 6
    finally:
        plugins.forget()


def test_new_method_refuses_a_bad_or_taken_name_and_an_existing_folder(tmp_path):
    (tmp_path / "almabench-mine").mkdir()
    (tmp_path / "almabench-mine" / "keep.txt").write_text("mine")
    cases = {
        "Bad_Name": "Error: new-method: 'Bad_Name' is not a method name; use lowercase letters, digits and "
                    "single hyphens, starting with a letter, at most 64 characters (e.g. my-method)",
        "app": "Error: new-method: 'app' is taken by almabench; choose a name not in: app, app-released, dense, gmp, "
               "imp, osp, rigl, scratch, set, shrink-perturb",
        "mine": f"Error: new-method: {tmp_path / 'almabench-mine'} exists; choose another --dest or name (nothing "
                f"was written)",
    }
    for name, message in cases.items():
        result = CliRunner().invoke(main, ["new-method", name, "--dest", str(tmp_path)])
        assert (result.exit_code, result.output) == (1, message + "\n")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["almabench-mine", "keep.txt"]


def test_new_method_kind_perturb_writes_a_weight_changing_method_that_keeps_the_contract_and_has_settings(tmp_path):
    result = CliRunner().invoke(main, ["new-method", "my-noise", "--kind", "perturb", "--dest", str(tmp_path)])
    assert result.exit_code == 0, result.output
    method = tmp_path / "almabench-my-noise" / "my_noise" / "method.py"
    plugin = tmp_path / "my_noise_method.py"  # the module as a --plugin file (registered by name, not entry point)
    plugin.write_text(method.read_text() + "\nfrom almabench.methods import register\n\nregister(MyNoise)\n")
    plugins.forget()
    try:
        report = check_method("my-noise", [str(plugin)])
        assert [c.status for c in report.checks] == ["pass"] * 6, report.lines()
        from almabench.methods import METHODS

        assert {s.name: s.default for s in METHODS.get("my-noise").settings} == {"shrink": 0.5, "noise": 0.01}
    finally:
        plugins.forget()
