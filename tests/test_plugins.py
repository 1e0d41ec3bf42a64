"""Methods from outside almabench (issue 29): --plugin files and entry points fill the registries in the parent
and in every worker, their code is recorded and fingerprinted, the contract check passes every built-in and
names each planted defect, and bad plugins are one line each with the results folder intact."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from almabench.cell.config import RunConfig, RunOptions
from almabench.cell.run import run_cell
from almabench.cli import main
from almabench.extend import plugins
from almabench.extend.contract import CHECKS, Probe, _Run, check_method, determinism_check
from almabench.methods import METHODS

HERE = Path(__file__).parent / "plugins"
HALF = HERE / "half.py"
TINY = ["--megabatches", "2", "--epochs", "1", "--set", "stream_images=300", "--threads", "1"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def no_plugins_after():
    """Each test starts and ends with almabench's own entries only (plugins stay registered in a process)."""
    plugins.forget()
    yield
    plugins.forget()


def file_fingerprint(path: Path) -> str:
    return hashlib.sha256(f"{path.name}\0".encode() + path.read_bytes()).hexdigest()[:16]


def kept_folder(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A results folder holding one earlier file, and what it holds (bad input must leave it so)."""
    out = tmp_path / "results"
    out.mkdir(parents=True)
    (out / "earlier.json").write_text('{"kept": true}')
    return out, {"earlier.json": b'{"kept": true}'}


def contents(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir()}


# ------------------------------------------------------------------------------------------------ discovery


def test_a_plugin_file_runs_beside_app_and_dense_through_loky_workers_and_is_recorded(tmp_path):
    out = tmp_path / "results"
    result = CliRunner().invoke(main, ["run", "--plugin", str(HALF), "--methods", "half,app,dense", "--jobs", "2",
                                       "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert "3 ran, 0 already done, 0 failed" in result.output
    docs = {d["config"]["method"]: d for d in (json.loads(p.read_text()) for p in out.glob("*.json"))}
    assert sorted(docs) == ["app", "dense", "half"]
    imported = [{"origin": "file", "from": str(HALF.resolve()), "package": "", "version": "",
                 "fingerprint": file_fingerprint(HALF)}]
    assert docs["half"]["environment"]["plugins"] == {"method": {
        "name": "half", "origin": "file", "from": str(HALF.resolve()), "package": "", "version": "",
        "fingerprint": file_fingerprint(HALF)}, "imported": imported}
    assert [s["density"] for s in docs["half"]["steps"]] == [pytest.approx(0.5, abs=1e-4)] * 2
    # made beside the plugin's code, which could have changed them (issue 37): named though they do not use it
    assert docs["app"]["environment"]["plugins"] == docs["dense"]["environment"]["plugins"] == {"imported": imported}


def test_plugins_in_a_spec_are_read_relative_to_it_and_reach_dask_worker_processes(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    folder = tmp_path / "spec"
    folder.mkdir()
    shutil.copy(HALF, folder / "half.py")
    spec = folder / "grid.toml"
    spec.write_text('plugins = ["half.py"]\n[grid]\nmethod = ["half"]\n[config]\nmegabatches = 2\nepochs = 1\n'
                    'stream_images = 300\n')
    out = tmp_path / "results"
    # worker processes of their own: they know "half" only if they import the plugin themselves (two: with one,
    # joblib runs the grid in this process)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        result = CliRunner().invoke(main, ["run", "--spec", str(spec), "--backend", "dask", "--scheduler",
                                           cluster.scheduler_address, "--threads", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (doc,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert doc["status"] == "ok" and doc["config"]["method"] == "half"
    assert doc["environment"]["plugins"]["method"]["from"] == str((folder / "half.py").resolve())
    plugins.forget()  # status imports the spec's plugins itself: a plugin method's scope names its cell
    status = CliRunner().invoke(main, ["status", str(out), "--spec", str(spec)])
    assert status.exit_code == 0, status.output
    assert f"  {spec}" in status.output and "1 cells: 1 done, 0 failed, 0 corrupt, 0 missing" in status.output


def test_list_says_where_each_plugin_entry_comes_from():
    result = CliRunner().invoke(main, ["list", "--plugin", str(HALF)])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.strip().startswith("half "))
    assert line == f"  half           magnitude-prune to 0.5 before megabatch 1 [plugin: {HALF.resolve()}]"
    assert next(x for x in result.output.splitlines() if x.strip().startswith("app ")).endswith("(paper version)")


def test_a_resume_refuses_a_checkpoint_made_by_other_plugin_code(tmp_path):
    plugin = tmp_path / "half.py"
    shutil.copy(HALF, plugin)
    config = RunConfig(method="half", megabatches=3, epochs=1, stream_images=300)
    options = RunOptions(device="cpu", threads=1, plugins=(str(plugin),))

    def killed_after_one(step):
        if step["step"] == 1:
            raise KeyboardInterrupt

    def run(resumed: list[int]):
        return run_cell(config, options, checkpoint=tmp_path / "cell.pt", on_resume=resumed.append)

    with pytest.raises(KeyboardInterrupt):
        run_cell(config, options, progress=killed_after_one, checkpoint=tmp_path / "cell.pt")
    plugins.forget()  # a new process: the same plugin code resumes
    resumed: list[int] = []
    run(resumed)
    assert resumed == [1]
    (tmp_path / "cell.pt").unlink()  # a finished cell's checkpoint is removed by its caller
    with pytest.raises(KeyboardInterrupt):
        run_cell(config, options, progress=killed_after_one, checkpoint=tmp_path / "cell.pt")
    plugin.write_text(plugin.read_text() + "\n# an edit\n")
    plugins.forget()
    resumed = []
    with pytest.warns(UserWarning, match="written by other code, settings or data; the cell starts from its first"):
        run(resumed)
    assert resumed == []


def test_cells_made_by_other_plugin_code_are_named_by_dry_run_status_and_run_and_rerun_changed_redoes_them(tmp_path):
    plugin, out, spec = tmp_path / "half.py", tmp_path / "out", tmp_path / "s.toml"
    shutil.copy(HALF, plugin)
    spec.write_text('plugins = ["half.py"]\n[grid]\nmethod = ["half", "dense"]\nseed = [0, 1]\n'
                    '[config]\nmegabatches = 2\nepochs = 1\nstream_images = 300\n')
    base = ["--spec", str(spec), "--out", str(out), "--threads", "1"]
    assert CliRunner().invoke(main, ["run", *base]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.json")}
    half = sorted(p.name for p in out.glob("*.json") if json.loads(p.read_text())["config"]["method"] == "half")
    plugin.write_text(plugin.read_text() + "\n# an edit\n")
    plugins.forget()  # a new process imports the edited file
    new_code = file_fingerprint(plugin)

    dry = CliRunner().invoke(main, ["run", *base, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "4 done (2 by other plugin code), 0 failed, 0 corrupt, 0 missing: 0 cell(s) to run" in dry.output
    assert dry.output.count("made by other plugin code than the code installed now: method half: code ") == 2
    assert f", code {new_code} now (--rerun-changed runs it again)" in dry.output

    plugins.forget()
    status = CliRunner().invoke(main, ["status", str(out), "--spec", str(spec)])
    assert status.exit_code == 0, status.output
    assert "4 cells: 4 done (2 by other plugin code), 0 failed" in status.output
    assert sorted(line.split(":")[0].strip() for line in status.output.splitlines()
                  if "made by other plugin code" in line) == half

    plugins.forget()
    kept = CliRunner().invoke(main, ["run", *base])
    assert kept.exit_code == 0, kept.output
    assert "warning: 2 finished cell(s) were made by other plugin code than the code installed now, kept as they " \
           "are; --rerun-changed runs them again:" in kept.output
    assert "0 ran, 4 already done" in kept.output
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} == before

    plugins.forget()
    rerun = CliRunner().invoke(main, ["run", *base, "--rerun-changed"])
    assert rerun.exit_code == 0, rerun.output
    assert "2 ran, 2 already done" in rerun.output
    assert sorted(p.name for p in out.glob("*.replaced")) == [f"{name}.replaced" for name in half]
    for name in half:
        assert (out / f"{name}.replaced").read_bytes() == before[name]
        made = json.loads((out / name).read_text())["environment"]["plugins"]["method"]["fingerprint"]
        assert made == new_code
    for name in set(before) - set(half):
        assert (out / name).read_bytes() == before[name]  # dense: almabench's own code, untouched
    plugins.forget()
    again = CliRunner().invoke(main, ["run", *base, "--dry-run"])
    assert "4 done, 0 failed" in again.output and "other plugin code" not in again.output
    plugin.write_text(plugin.read_text() + "\n# a second edit\n")
    plugins.forget()
    report = CliRunner().invoke(main, ["report", str(out), "--out", str(tmp_path / "r"), "--format", "png",
                                       "--plugin", str(plugin)])
    assert report.exit_code == 0, report.output
    named = [line for line in report.output.splitlines() if "made by other plugin code" in line]
    assert len(named) == 2 and all(line.startswith("warning: half seed ") for line in named)
    assert f"then, code {file_fingerprint(plugin)} now" in named[0]


# ------------------------------------------------------------------------------------------------ the contract


def test_check_method_passes_every_built_in():
    reports = {name: check_method(name) for name in METHODS}
    assert {name: [c.name for c in r.checks] for name, r in reports.items()} == {n: list(CHECKS) for n in METHODS}
    assert {name: [line for line in r.lines() if "fail" in line] for name, r in reports.items() if not r.ok} == {}
    notes = {(name, c.name) for name, r in reports.items() for c in r.checks if c.status == "note"}
    assert notes == {("app-released", "density")}  # every other built-in holds the density it declares
    density = reports["app-released"].get("density")
    assert density.detail == (
        "departs on purpose (departure 2: each new mask is multiplied into the old one, so the density compounds "
        "below the schedule it prunes to): megabatch 3 records density 0.1927 but the method declares 0.3664 "
        "(|Δ| = 0.1737 > 0.005)")


DEFECTS = {
    "density": "megabatch 2 records density 0.3664 but the method declares 0.5000 (|Δ| = 0.1336 > 0.005)",
    "masks": "pruned weights are not zero after 18 of 18 SGD steps (",
    "pairing": "its first before_step changes ",
    "resume": "killed after megabatch 1 and resumed, the run differs from an uninterrupted one: megabatch 2 differs "
              "in megabatches_seen (megabatches_seen: 2 vs 1) (keep what the method carries between megabatches in "
              "state_dict / load_state_dict)",
    "record": "step_record's key(s) test_accuracy shadow the harness's own; rename them",
    "determinism": "two runs at the same seed differ: megabatch 1 differs in noise (",  # and says what to use
}


@pytest.mark.parametrize("check", CHECKS)
def test_check_method_fails_each_planted_defect_with_its_own_message(check):
    report = check_method(f"defect-{check}", [str(HERE / "defects.py")])
    failed = [c.name for c in report.checks if not c.ok]
    assert failed == (["resume", "determinism"] if check == "determinism" else [check])  # resume needs determinism
    assert report.get(check).detail.startswith(DEFECTS[check])
    assert report.lines()[-1].startswith(f"defect-{check} breaks the contract: ")


@pytest.mark.parametrize("name", ["defect-numpy-noise", "defect-torch-noise"])
def test_check_method_fails_noise_of_0_001_from_an_unseeded_or_global_generator_and_says_what_to_use(name):
    """Noise this small leaves the rounded step records alone: the weights, compared bit for bit, do not."""
    report = check_method(name, [str(HERE / "defects.py")])
    failed = [c.name for c in report.checks if not c.ok]  # resume too where the draw is unseeded
    assert failed[-1] == "determinism" and set(failed) <= {"resume", "determinism"}
    detail = report.get("determinism").detail
    assert detail.startswith("two runs at the same seed ")
    assert "draw every random number from ctx.generator" in detail and "global random state" in detail


def test_the_determinism_check_compares_the_kept_networks_bit_for_bit_where_the_step_records_agree():
    steps = [{"step": 1, "test_errors": 3, "seconds": 1.0}, {"step": 2, "test_errors": 2, "seconds": 2.0}]
    first = _Run({"steps": steps}, Probe(states=["a", "b"]))
    again = _Run({"steps": [{**s, "seconds": 9.0} for s in steps]}, Probe(states=["a", "b"]))
    other = _Run({"steps": steps}, Probe(states=["a", "c"]))
    assert determinism_check(first, again).status == "pass"
    failed = determinism_check(first, other)
    assert failed.status == "fail"
    assert failed.detail.startswith("two runs at the same seed give the same step records but other weights, "
                                    "batch-norm statistics or masks after megabatch 2 (compared bit for bit")


def test_check_method_passes_noise_drawn_from_the_cells_generator():
    report = check_method("seeded-noise", [str(HERE / "defects.py")])
    assert report.ok, report.lines()
    assert report.get("determinism").detail.startswith("two runs give identical step records and bit-identical "
                                                       "weights and masks after all 3 megabatches")


def test_check_method_command_prints_each_check_and_exits_1_on_a_defect():
    result = CliRunner().invoke(main, ["check-method", "defect-record", "--plugin", str(HERE / "defects.py")])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"check-method defect-record (file {(HERE / 'defects.py').resolve()}): digits, "
                               f"convnet, T = 3, 1 epoch, 600 images, seed 0, 1 torch thread")
    assert [line.split()[:2] for line in lines[1:7]] == [["pass", c] if c != "record" else ["fail", c] for c in CHECKS]
    assert lines[-1] == "defect-record breaks the contract: record (1 of 6 checks)"


# ------------------------------------------------------------------------------------------------ bad input


def bad_run(tmp_path: Path, *args: str, methods: str = "dense") -> tuple[int, str, Path, dict[str, bytes]]:
    out, before = kept_folder(tmp_path)
    result = CliRunner().invoke(main, ["run", *args, "--methods", methods, "--out", str(out), *TINY])
    return result.exit_code, result.output, out, before


def test_a_plugin_that_fails_to_import_is_one_line(tmp_path):
    plugin = tmp_path / "broken.py"
    plugin.write_text("import not_installed_anywhere\n")
    code, output, out, before = bad_run(tmp_path, "--plugin", str(plugin))
    assert code == 1
    assert output == (f"Error: --plugin {plugin} (file {plugin}) failed to import: ModuleNotFoundError: No module "
                      f"named 'not_installed_anywhere'\n")
    assert contents(out) == before


def test_a_plugin_path_that_does_not_exist_is_one_line(tmp_path):
    code, output, out, before = bad_run(tmp_path, "--plugin", "nowhere/my_method.py")
    assert code == 1
    assert output == (f"Error: --plugin nowhere/my_method.py: no such file ({Path.cwd() / 'nowhere/my_method.py'}); "
                      f"give a .py file that registers a method, or an importable module name\n")
    assert contents(out) == before
    code, output, _, _ = bad_run(tmp_path / "b", "--plugin", "no_such_module_anywhere")
    assert output.startswith("Error: --plugin no_such_module_anywhere: no module named 'no_such_module_anywhere' "
                             "here, and no such file; give a .py file or a module importable in this Python (")
    spec = tmp_path / "grid.toml"
    spec.write_text('plugins = ["gone.py"]\n[grid]\nmethod = ["dense"]\n')
    result = CliRunner().invoke(main, ["run", "--spec", str(spec), "--out", str(out)])
    assert result.exit_code == 1
    assert result.output == (f"Error: {spec}: plugins: no such file 'gone.py' ({tmp_path / 'gone.py'}); a plugin file "
                             f"is read relative to the spec's folder\n")
    assert contents(out) == before


def test_a_plugin_name_that_collides_with_a_built_in_or_another_plugin_is_one_line(tmp_path):
    plugin = tmp_path / "mine.py"
    plugin.write_text("from almabench.methods import Method, register\n\n\n@register\nclass App(Method):\n"
                      "    name = 'app'\n")
    code, output, out, before = bad_run(tmp_path, "--plugin", str(plugin))
    assert code == 1
    assert output.startswith(f"Error: file {plugin}: method 'app' is already registered by almabench; rename it "
                             f"(names taken: app, app-released, dense, ")
    assert contents(out) == before
    plugins.forget()
    other = tmp_path / "other" / "half.py"
    other.parent.mkdir()
    shutil.copy(HALF, other)
    code, output, out, before = bad_run(tmp_path / "b", "--plugin", str(HALF), "--plugin", str(other))
    assert code == 1
    assert output.startswith(f"Error: file {other}: method 'half' is already registered by file {HALF.resolve()}; "
                             f"rename it")
    assert contents(out) == before


def fake_distribution(site: Path, entry_points: str, module: str, source: str) -> None:
    """An installed package as importlib.metadata sees one: a .dist-info folder with entry points, and its module
    (a name of its own per test: an imported module stays in sys.modules)."""
    info = site / "fakeplug-1.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text(entry_points)
    (site / f"{module}.py").write_text(source)


def test_an_installed_package_that_registers_a_built_in_name_is_one_warning_naming_it_and_the_built_in_runs(
        tmp_path, monkeypatch):
    site = tmp_path / "site"
    fake_distribution(site, "[almabench.methods]\nosp = fakeplug_osp:Mine\n", "fakeplug_osp",
                      "from almabench.methods import Method\n\n\nclass Mine(Method):\n    name = 'osp'\n")
    monkeypatch.syspath_prepend(str(site))
    plugins.forget()
    code, output, out, before = bad_run(tmp_path, methods="osp")
    assert code == 0, output
    assert [line for line in output.splitlines() if line.startswith("warning: ")] == [
        "warning: entry point osp = fakeplug_osp:Mine of package fakeplug 1.2: method 'osp' is almabench's own, "
        "which runs; the package's entry is ignored (rename its entry point to use it, or pip uninstall fakeplug)"]
    made = [json.loads(p.read_text()) for p in out.glob("*.json") if p.name != "earlier.json"]
    assert [(d["config"]["method"], d["final_density"] < 1, "plugins" in d["environment"]) for d in made] == [
        ("osp", True, False)]
    listed = CliRunner().invoke(main, ["list"])
    assert listed.exit_code == 0 and "  osp            prune once at step 1" in listed.output


def test_an_entry_point_that_is_not_a_method_warns_a_run_that_does_not_use_it_and_stops_one_that_does(
        tmp_path, monkeypatch):
    site = tmp_path / "site"
    fake_distribution(site, "[almabench.methods]\nnotamethod = fakeplug_helper:helper\n"
                            "missing = fakeplug_gone:Thing\n", "fakeplug_helper", "def helper():\n    pass\n")
    monkeypatch.syspath_prepend(str(site))
    plugins.forget()
    code, output, out, before = bad_run(tmp_path, methods="dense")  # the broken entries are not used
    assert code == 0, output
    warned = [line for line in output.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 2
    assert warned[0] == ("warning: entry point missing = fakeplug_gone:Thing of package fakeplug 1.2 failed to "
                         "import: ModuleNotFoundError: No module named 'fakeplug_gone' (ignored unless method "
                         "'missing' is used)")
    assert warned[1].startswith("warning: entry point notamethod = fakeplug_helper:helper of package fakeplug 1.2: "
                                "names <function helper at ")
    assert warned[1].endswith(">, which is not a subclass of almabench.methods.Method (ignored unless method "
                              "'notamethod' is used)")
    assert "1 ran, 0 already done, 0 failed" in output
    plugins.forget()
    code, output, out, before = bad_run(tmp_path / "b", methods="notamethod")
    assert code == 1
    assert output.splitlines()[-1].startswith(
        "Error: entry point notamethod = fakeplug_helper:helper of package fakeplug 1.2: names <function helper at ")
    assert output.splitlines()[-1].endswith(">, which is not a subclass of almabench.methods.Method")
    assert contents(out) == before


def test_an_entry_point_method_is_listed_with_its_package_and_runs(tmp_path, monkeypatch):
    site = tmp_path / "site"
    fake_distribution(site, "[almabench.methods]\nhalf-ep = fakeplug_mod:HalfEP\n", "fakeplug_mod",
                      HALF.read_text().replace("@register\n", "").replace('"half"', '"half-ep"')
                      .replace("class Half(", "class HalfEP("))
    monkeypatch.syspath_prepend(str(site))
    plugins.forget()
    result = CliRunner().invoke(main, ["list"])
    assert "  half-ep        magnitude-prune to 0.5 before megabatch 1 [plugin: fakeplug 1.2]" in result.output
    doc = run_cell(RunConfig(method="half-ep", megabatches=2, epochs=1, stream_images=300),
                   RunOptions(device="cpu", threads=1))
    assert doc["environment"]["plugins"]["method"] == {
        "name": "half-ep", "origin": "entry point", "from": "half-ep = fakeplug_mod:HalfEP", "package": "fakeplug",
        "version": "1.2", "fingerprint": file_fingerprint(site / "fakeplug_mod.py")}


def test_a_pruner_from_a_plugin_file_and_an_export_format_from_an_entry_point(tmp_path, monkeypatch):
    plugin = tmp_path / "negmag.py"
    plugin.write_text("from almabench.cell.sparsity import PRUNERS\n\n\n@PRUNERS.register('negmag')\n"
                      "def smallest_first(model, params, images, labels, generator, batch_size):\n"
                      "    return {name: -p.detach().abs() for name, p in params.items()}\n")
    out = tmp_path / "results"
    out.mkdir()
    doc = run_cell(RunConfig(method="app", pruner="negmag", megabatches=2, epochs=1, stream_images=300),
                   RunOptions(device="cpu", threads=1, plugins=(str(plugin),)))
    assert doc["environment"]["plugins"] == {"pruner": {
        "name": "negmag", "origin": "file", "from": str(plugin), "package": "", "version": "",
        "fingerprint": file_fingerprint(plugin)}, "imported": [{
        "origin": "file", "from": str(plugin), "package": "", "version": "", "fingerprint": file_fingerprint(plugin)}]}
    (out / f"{doc['config_hash']}.json").write_text(json.dumps(doc))
    site = tmp_path / "site"
    fake_distribution(site, "[almabench.exporters]\nmethods-txt = fakeplug_export:WRITER\n", "fakeplug_export",
                      "from almabench.analysis.export import Writer\n\n"
                      "WRITER = Writer('fakeplug_export', 'json', 'none', 'cat {dest}/methods.txt')\n\n\n"
                      "def export(results, root, dest):\n    dest.mkdir(parents=True, exist_ok=True)\n"
                      "    (dest / 'methods.txt').write_text(','.join(d['config']['pruner'] for _, d in results))\n"
                      "    return 'methods.txt'\n")
    monkeypatch.syspath_prepend(str(site))
    plugins.forget()
    result = CliRunner().invoke(main, ["export", str(out), "--to", "methods-txt", "--dest", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x" / "methods.txt").read_text() == "negmag"
    assert "export formats: methods-txt [plugin: fakeplug 1.2], mlflow," in CliRunner().invoke(main, ["list"]).output


def test_a_plugin_importable_in_the_parent_but_not_in_a_worker_is_a_failure_record(tmp_path):
    plugin = tmp_path / "fragile.py"
    plugin.write_text(
        "import os\nfrom pathlib import Path\n\nfrom almabench.methods import Method, register\n\n"
        f"first = Path({str(tmp_path / 'parent.pid')!r})\n"
        "if first.exists() and first.read_text() != str(os.getpid()):\n"
        "    raise ImportError('fragile needs a GPU library this worker lacks')\n"
        "first.write_text(str(os.getpid()))\n\n\n"
        "@register\nclass Fragile(Method):\n    name = 'fragile'\n")
    out, before = kept_folder(tmp_path)
    result = CliRunner().invoke(main, ["run", "--plugin", str(plugin), "--methods", "fragile,dense", "--jobs", "2",
                                       "--out", str(out), *TINY])
    assert result.exit_code == 1
    docs = {d["config"]["method"]: d for d in (json.loads(p.read_text()) for p in out.glob("*.json") if p.name !=
                                               "earlier.json")}
    assert docs["dense"]["status"] == "ok"  # it does not need the plugin: a warning in its worker, no failure
    assert docs["fragile"]["status"] == "failed"
    assert docs["fragile"]["error"].startswith("AlmabenchError: method 'fragile' is not registered in the process "
                                               "that runs this cell (")
    assert docs["fragile"]["error"].endswith(f"): --plugin {plugin} (file {plugin}) failed to import: ImportError: "
                                             f"fragile needs a GPU library this worker lacks; the plugin must be "
                                             f"importable wherever cells run")
    assert (out / "earlier.json").read_bytes() == before["earlier.json"]
    assert result.output.splitlines()[-1].startswith("Error: 1 cell(s) failed; their records: ")


# ------------------------------------------------------------------------------------------------ the report


def test_a_plugin_method_gets_a_look_of_its_own_from_its_name_unlike_every_built_in():
    from almabench.analysis.style import PLUGIN_COLOURS, STYLES, contrast_on_white, style

    looks = {name: style(name) for name in ("half", "scaffolded-test", "my-method", "lth-variant", "x")}
    assert looks == {name: style(name) for name in looks}  # the same every time: a hash of the name, not an order
    assert looks["half"] == style("half") and looks["half"].marker == "d"
    assert looks["half"].linestyle == (0, (3, 1, 1, 1, 1, 1)) and looks["half"].colour == PLUGIN_COLOURS[0]
    assert min(contrast_on_white(c) for c in PLUGIN_COLOURS) >= 3.0  # a pale yellow (1.4:1) would fail
    assert contrast_on_white((1.0, 1.0, 1.0)) == pytest.approx(1.0) and contrast_on_white((0, 0, 0)) == 21.0
    for look in looks.values():
        for builtin in STYLES.values():
            assert look.colour != builtin.colour and look.marker != builtin.marker
            assert look.linestyle != builtin.linestyle
    assert len({(s.colour, s.marker, s.linestyle) for s in looks.values()}) == len(looks)
