"""A real one-node Slurm on localhost for tests: munged, slurmctld and slurmd started from a
private folder with their own config, sockets, ports and state, and stopped by their PIDs.

Needs Debian's slurm-wlm and munge (`.ci/run` installs them when it runs as root) and root
itself (slurmd starts jobs as their user).
"""

import os
import shutil
import signal
import socket
import subprocess
import time

from launch import launch_local

DAEMONS = ('/usr/sbin/munged', '/usr/sbin/slurmctld', '/usr/sbin/slurmd')
CRED_EXPIRE_S = 10


def unavailable() -> str | None:
  """Why a local Slurm cannot run here, or None."""
  missing = [d for d in DAEMONS if not os.path.exists(d)]
  if missing:
    return f'{", ".join(missing)} not installed (apt-get install slurm-wlm munge)'
  if os.geteuid() != 0:
    return 'slurmd must run as root to start jobs'
  return None


class LocalSlurm:
  """Start with `start()`; `env` is what sbatch, squeue and scontrol need (SLURM_CONF)."""

  def __init__(self, folder: str, cpus: int = 2):
    self.folder = folder
    self.cpus = cpus
    self.env = dict(os.environ, SLURM_CONF=os.path.join(folder, 'slurm.conf'))
    self.pid_files = [os.path.join(folder, f'{name}.pid')
                      for name in ('munged', 'slurmctld', 'slurmd')]

  def _path(self, name: str) -> str:
    return os.path.join(self.folder, name)

  def _write_config(self) -> None:
    host = socket.gethostname().split('.')[0]
    memory = int(subprocess.run(['slurmd', '-C'], capture_output=True, text=True, check=True)
                 .stdout.split('RealMemory=')[1].split()[0])
    ctld_port, slurmd_port = launch_local.free_ports(2)
    for sub in ('state', 'spool'):
      os.makedirs(self._path(sub), exist_ok=True)
    lines = [
        'ClusterName=segtest', f'SlurmctldHost={host}', f'SlurmctldPort={ctld_port}',
        f'SlurmdPort={slurmd_port}', 'AuthType=auth/munge',
        # A requeued job waits cred_expire + 1 s (default 120) before it may start again;
        # starting it sooner (scontrol update StartTime=now) is refused with "Job credential
        # revoked" and the job FAILS. A short lifetime keeps Slurm's own delay in the test.
        f'AuthInfo=socket={self._path("munge.socket")},cred_expire={CRED_EXPIRE_S}',
        'CredType=cred/munge',
        # Once its begin time has passed, a requeued job waited for the main scheduling loop
        # (sched_interval, default 60 s: 38-43 s of the Slurm test's idle time here); the
        # test's one-job cluster runs it every second.
        'SchedulerParameters=sched_interval=1',
        'SlurmUser=root', 'SlurmdUser=root', f'StateSaveLocation={self._path("state")}',
        f'SlurmdSpoolDir={self._path("spool")}',
        f'SlurmctldPidFile={self.pid_files[1]}', f'SlurmdPidFile={self.pid_files[2]}',
        f'SlurmctldLogFile={self._path("slurmctld.log")}',
        f'SlurmdLogFile={self._path("slurmd.log")}',
        'ProctrackType=proctrack/linuxproc', 'TaskPlugin=task/none',
        'SelectType=select/cons_tres', 'SelectTypeParameters=CR_Core',
        'JobAcctGatherType=jobacct_gather/none', 'AccountingStorageType=accounting_storage/none',
        'MpiDefault=none', 'ReturnToService=2',
        f'NodeName={host} CPUs={self.cpus} RealMemory={int(memory * 0.9)} State=UNKNOWN',
        f'PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP',
    ]  # No RequeueExit: the job script requeues itself.
    with open(self.env['SLURM_CONF'], 'w') as f:
      f.write('\n'.join(lines) + '\n')

  def start(self, timeout_s: float = 60) -> 'LocalSlurm':
    self._write_config()
    conf = self.env['SLURM_CONF']
    subprocess.run(['/usr/sbin/munged', '--force', f'--socket={self._path("munge.socket")}',
                    f'--pid-file={self.pid_files[0]}', f'--log-file={self._path("munged.log")}',
                    f'--seed-file={self._path("munge.seed")}'], check=True)
    subprocess.run(['/usr/sbin/slurmctld', '-f', conf], check=True, env=self.env)
    subprocess.run(['/usr/sbin/slurmd', '-f', conf], check=True, env=self.env)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
      state = self.run('sinfo', '-h', '-o', '%t', check=False).stdout.strip()
      if state in ('idle', 'mix', 'alloc'):
        return self
      time.sleep(1)
    raise RuntimeError(f'Slurm did not come up (sinfo: {state!r}); see {self.folder}/*.log')

  def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=self.env, capture_output=True, text=True, check=check,
                          timeout=120)

  def job(self, job_id: str) -> dict:
    """`scontrol show job` as {key: value}."""
    text = self.run('scontrol', '-o', 'show', 'job', job_id).stdout
    return dict(item.split('=', 1) for item in text.split() if '=' in item)

  def controller_log(self, lines: int = 20) -> str:
    """The end of slurmctld's log: why Slurm failed or killed a job, for an assertion."""
    with open(self._path('slurmctld.log')) as f:
      return ''.join(f.readlines()[-lines:])

  def wait_for(self, job_id: str, states: tuple, timeout_s: float) -> dict:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
      job = self.job(job_id)
      if job['JobState'] in states:
        return job
      time.sleep(1)
    raise TimeoutError(f'job {job_id} still {job["JobState"]} after {timeout_s} s')

  def stop(self) -> None:
    for pid_file in reversed(self.pid_files):
      try:
        with open(pid_file) as f:
          os.kill(int(f.read().strip()), signal.SIGTERM)
      except (OSError, ValueError):
        pass
    time.sleep(1)
    shutil.rmtree(self._path('state'), ignore_errors=True)
