"""--to tensorboard (and `run --log tensorboard`): one run directory per cell, written with torch's
SummaryWriter (the tensorboard package; TensorFlow is never needed).

The directory is runs.run_name (dataset/arch/T=/epochs=/method/seed=..-hash), so TensorBoard's run selector
groups the cells by block; an export leaves out the leading components every one of its runs shares
(runs.shared_prefix), so that the run list, which cuts long names, shows method and seed. Scalars are logged per
megabatch (step = megabatch t); each run's hparams values (the config, ints as text so that TensorBoard shows
64, not 64.000) and the final metrics as scalars at step T go into the same directory, not into the timestamped
subfolder SummaryWriter.add_hparams would make. An export also writes one experiment-level hparams config at the
top of DEST: the keys that vary across its cells first (marked as differing, which TensorBoard sorts first), the
constant ones after, and the final metrics declared. A live log has none; TensorBoard then derives the
columns from the runs, with the differing keys first as well.

Each step is in the log once: a run opened to go on after a resume (or to start a cell again) writes with
purge_step = 1 and logs every recorded step again, so TensorBoard drops whatever an earlier process had
written of this run; an export first removes the earlier event files of the cells it writes. TensorBoard reads a
run's event files in name order, and a name starts with the second its writer opened: a new writer therefore waits
until its second is past every earlier file's, or a rerun opened in the killed process's second could sort first and
have its steps purged by the older file's.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from .dest import inside
from .runs import (
    FINAL_METRICS,
    FIRST_KEYS,
    export_runs,
    final_metrics,
    hparams,
    run_name,
    shared_prefix,
    step_scalars,
    varying_keys,
)

EVENT_FILES = "events.out.tfevents.*"
Value = bool | int | float | str


def opened_second(event_file: Path) -> int | None:
    """The whole second an event file's writer opened (events.out.tfevents.SECOND.host.pid.uid); None for a
    name no writer made."""
    second = event_file.name.split(".")[3]
    return int(second) if second.isdigit() else None


def wait_to_sort_last(run_dir: Path) -> None:
    """Sleep (under a second, or as long as a file from the future needs) until a writer opened now sorts after every
    event file already in run_dir."""
    newest = max((s for f in run_dir.glob(EVENT_FILES) if (s := opened_second(f)) is not None), default=None)
    if newest is not None:
        while time.time() < newest + 1:
            time.sleep(newest + 1 - time.time())


def _struct(value: Value) -> struct_pb2.Value:
    """An hparam value as TensorBoard should show it: an integer as text, its digits (a number would read 64.000),
    a float as a number, a bool as a bool."""
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, float):
        return struct_pb2.Value(number_value=value)
    return struct_pb2.Value(string_value=str(value))


def _data_type(value: Value) -> int:
    if isinstance(value, bool):
        return api_pb2.DATA_TYPE_BOOL
    return api_pb2.DATA_TYPE_FLOAT64 if isinstance(value, float) else api_pb2.DATA_TYPE_STRING


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    data.version = metadata.PLUGIN_DATA_VERSION
    plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString())
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])


def session_summaries(values: dict[str, Value]) -> list[Summary]:
    """A run's hparams values (session start) and its end, as TensorBoard's hparams plugin reads them."""
    start = plugin_data_pb2.SessionStartInfo()
    for key, value in values.items():
        start.hparams[key].CopyFrom(_struct(value))
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS)
    return [_summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
            _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))]


def experiment_summary(cells: list[dict[str, Value]], first: list[str]) -> Summary:
    """The experiment-level hparams config of an export: every key in the cells' order (runs.hparams: the
    varying keys first), each with its type, whether it differs across the cells and its values (for text),
    and the final metrics."""
    infos = []
    for key in cells[0]:
        values = [c[key] for c in cells]
        distinct = sorted(set(values), key=lambda v: (0, float(v), "") if isinstance(v, (int, float))
                          else (1, 0.0, str(v)))
        info = api_pb2.HParamInfo(name=key, type=_data_type(values[0]), differs=len(distinct) > 1)
        if info.type != api_pb2.DATA_TYPE_FLOAT64:
            info.domain_discrete.CopyFrom(struct_pb2.ListValue(values=[_struct(v) for v in distinct]))
        infos.append(info)
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in FINAL_METRICS]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)
    return _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment))


class TensorBoardRun:
    """One cell's TensorBoard run directory under dest (its name without `strip`, a prefix every run shares)."""

    def __init__(self, dest: Path, config: dict[str, Any], config_hash: str, replace: bool = False,
                 first: tuple[str, ...] | list[str] = FIRST_KEYS, strip: str = "") -> None:
        self.dir = inside(dest, Path(dest) / run_name(config, config_hash).removeprefix(strip))
        self.dir.mkdir(parents=True, exist_ok=True)
        if replace:  # an earlier export's event files (a link is removed, never what it points to)
            for old in self.dir.glob(EVENT_FILES):
                if old.is_file() or old.is_symlink():
                    old.unlink()
        self.config, self.config_hash, self.first = config, config_hash, first
        wait_to_sort_last(self.dir)
        # purge_step=1: every earlier event of this run is superseded by what this writer logs
        self.writer = SummaryWriter(str(self.dir), purge_step=None if replace else 1, flush_secs=3600)

    def step(self, step: dict[str, Any], cer_so_far: int, wall_time: float | None = None) -> None:
        for tag, value in step_scalars(step, cer_so_far).items():
            self.writer.add_scalar(tag, value, step["step"], walltime=wall_time)
        self.writer.flush()  # a killed worker loses at most the step it was writing

    def finish(self, result: dict[str, Any], wall_time: float | None = None) -> None:
        last = result["steps"][-1]["step"]
        file_writer = self.writer._get_file_writer()  # noqa: SLF001 - the same file, not add_hparams' subfolder
        for summary in session_summaries(hparams(self.config, self.config_hash, self.first)):
            file_writer.add_summary(summary, last, wall_time)
        for tag, value in final_metrics(result).items():
            self.writer.add_scalar(tag, value, last, walltime=wall_time)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def export(results: list[tuple[Path, dict[str, Any]]], root: Path, dest: Path) -> str:
    names = [run_name(result["config"], result["config_hash"]) for _, result in results]
    n = export_runs(functools.partial(TensorBoardRun, strip=shared_prefix(names)), results, dest)
    first = varying_keys([result["config"] for _, result in results])
    for old in dest.glob(EVENT_FILES):  # the experiment config of an earlier export
        old.unlink()
    with SummaryWriter(str(dest)) as writer:
        writer._get_file_writer().add_summary(  # noqa: SLF001 - a bare summary, no scalar
            experiment_summary([hparams(r["config"], r["config_hash"], first) for _, r in results], first))
    return f"{n} run directories"


LIVE_RUN = TensorBoardRun  # what `almabench run --log` opens for each cell (almabench.grid.watch)
