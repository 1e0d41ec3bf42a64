"""A one-node Slurm of the tests' own: munged, slurmctld and slurmd started directly (no systemd), every file
under one temporary folder, stopped at the end. Debian's slurm-wlm and munge; run as root (slurmd is).

Why each setting: proctrack/linuxproc and task/none need no cgroups (a container has none to give);
accounting off (no slurmdbd: sacct has nothing, as the README says); cons_tres with CR_Core hands out the
node's cores, one a job; cred_expire=10 lets a requeued job start again after ~10 s instead of the default
120 s (Slurm holds a requeued job until the old launch credential expires); MinJobAge keeps a finished job
in squeue briefly; SchedulerParameters=sched_interval=2 and a short message timeout keep the waits short.
`python tests/slurm_cluster.py` starts one by hand and prints the SLURM_CONF to export (Ctrl-C stops it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


def missing() -> str:
    """Why no Slurm can start here ("" where it can)."""
    absent = [name for name in (*DAEMONS, "sbatch", "squeue", "scontrol", "srun") if shutil.which(name) is None]
    if absent:
        return f"Slurm is not installed ({', '.join(absent)} not found; apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "a test Slurm needs root (slurmd runs jobs as their user)"
    return ""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class Cluster:
    root: Path
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_conf(self) -> None:
        host = socket.gethostname().split(".")[0]
        ctld, node = _free_ports(2)
        for sub in ("state", "spool", "log", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f"""\
ClusterName=almabenchtest
SlurmctldHost={host}
SlurmctldPort={ctld}
SlurmdPort={node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.root}/munge/munge.socket,cred_expire=10
StateSaveLocation={self.root}/state
SlurmdSpoolDir={self.root}/spool
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd.pid
SlurmctldLogFile={self.root}/log/slurmctld.log
SlurmdLogFile={self.root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
SlurmctldParameters=preempt_send_user_signal
MinJobAge=30
KillWait=5
MessageTimeout=5
InactiveLimit=0
ReturnToService=2
MpiDefault=none
NodeName={host} CPUs={self.cpus} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")

    def start(self, timeout: float = 60.0) -> None:
        self.write_conf()
        m = self.root / "munge"
        self._spawn(["munged", "--foreground", "--force", f"--socket={m}/munge.socket",
                     "--key-file=/etc/munge/munge.key", f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log",
                     f"--seed-file={m}/munged.seed"], "munged")
        self._wait(lambda: (m / "munge.socket").exists(), timeout, "munged")
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld")
        self._spawn(["slurmd", "-D", "-f", str(self.conf)], "slurmd")
        self._wait(self._node_idle, timeout, "the node to come up")

    def _spawn(self, cmd: list[str], name: str) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")  # noqa: SIM115 - closed with the process
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
        return out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "".join(f"\n--- {f.name}\n{f.read_text()[-1500:]}"
                               for f in sorted((self.root / "log").glob("*")))
                self.stop()
                raise RuntimeError(f"timed out waiting for {what} (exited: {dead}){logs}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Cancel every job and wait until they are gone (a slurmd stopped under a running job leaves its
        slurmstepd behind), then stop the daemons."""
        subprocess.run(["scancel", "--full", "--partition=test"], env=self.env, capture_output=True)
        deadline = time.monotonic() + 30  # KillWait is 5 s
        while time.monotonic() < deadline and all(p.poll() is None for p in self.procs):
            left = subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env, capture_output=True, text=True)
            if left.returncode != 0 or not left.stdout.strip():
                break
            time.sleep(0.5)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


if __name__ == "__main__":
    import tempfile

    cluster = Cluster(Path(tempfile.mkdtemp(prefix="slurm-")))
    cluster.start()
    print(f"export SLURM_CONF={cluster.conf}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        print(f"stopped; logs in {cluster.root}/log", file=sys.stderr)
