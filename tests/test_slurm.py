"""The shipped launch/slurm.sbatch on a real one-node Slurm: two tasks are two workers of one
cluster with two local replicas' weights, and a SIGTERM requeues the job, which resumes and ends 0.
No CUDA_VISIBLE_DEVICES is set and slurm.conf has no RequeueExit."""

import logging
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from tests import slurm_local
from tests.conftest import REPO, graph_rewrites, main_in_process

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(slurm_local.unavailable() is not None,
                                 reason=f'no local Slurm: {slurm_local.unavailable()}')]

ARGS = ['--config.data.source=synthetic', '--config.data.image_size=32',
        '--config.train.global_batch_size=8', '--config.eval.global_batch_size=8',
        '--config.data.synthetic.num_trainval=48', '--config.data.synthetic.num_test=8',
        '--config.data.synthetic.photo_size=48', '--config.train.epochs=1',
        '--config.train.checkpoint_every_steps=5', '--config.summaries.explain_every_epochs=0',
        '--config.data.deterministic=True']

ENDED = ('COMPLETED', 'FAILED', 'CANCELLED')  # The states a job ends in.


@pytest.fixture(scope='module')
def slurm(tmp_path_factory):
  cluster = slurm_local.LocalSlurm(str(tmp_path_factory.mktemp('slurm'))).start()
  yield cluster
  cluster.stop()


def _submit(slurm, workdir: str, log: str, *args: str) -> str:
  """The job id of launch/slurm.sbatch submitted with ARGS and `args`, two tasks on one node."""
  env = {k: v for k, v in slurm.env.items() if k != 'CUDA_VISIBLE_DEVICES'}
  command = ['sbatch', '--parsable', '--nodes=1', '--ntasks-per-node=2', '--cpus-per-task=1',
             f'--output={log}', 'launch/slurm.sbatch', *ARGS, *args]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                        env=dict(env, WORKDIR=workdir, PYTHON=sys.executable))
  assert done.returncode == 0, done.stderr
  return done.stdout.strip().split(';')[0]


def _fingerprints(text: str) -> dict:
  return dict(re.findall(r'Final weights on (worker \d): fingerprint (\S+)', text))


def test_two_tasks_train_as_one_cluster_and_a_sigterm_requeues_the_job_which_resumes(
    slurm, tmp_path, capsys, caplog):
  """One job answers both: its two tasks are the two workers of one cluster, a SIGTERM
  checkpoints both at one step and requeues the job, which resumes there and ends 0 with the
  weights of 2 local replicas trained without a stop."""
  workdir, log = str(tmp_path / 'run'), str(tmp_path / 'job.log')
  job_id = _submit(slurm, workdir, log, '--config.train.steps_per_epoch=60')
  deadline = time.time() + 300
  while not (os.path.exists(log) and 'ckpt-10' in open(log).read()):
    assert time.time() < deadline, 'no checkpoint within 300 s'
    time.sleep(1)
  slurm.run('scancel', '--signal=TERM', job_id)
  job = slurm.wait_for(job_id, ('PENDING',), 120)
  assert job['Restarts'] == '1'  # Slurm starts it again cred_expire + 1 s later, on its own.
  job = slurm.wait_for(job_id, ENDED, 400)
  text = open(log).read()  # Both attempts: the job log is appended to.
  assert job['JobState'] == 'COMPLETED' and job['ExitCode'] == '0:0', (
      text[-3000:] + slurm.controller_log())
  assert re.search(r'CollectiveAllReduceStrategy with 2 replicas \(2 workers\) .*task worker 0 '
                   r'\(chief\)', text)
  assert 'task worker 1.' in text
  assert 'device:GPU' not in text
  saved = re.findall(r'Stopped: SIGTERM received: saved \S+/ckpt-(\d+) at step (\d+) of 60',
                     text)
  assert len(saved) == 2 and len(set(saved)) == 1  # Both workers, the same step.
  step = saved[0][1]
  assert f'requeueing job {job_id}' in text
  assert len(re.findall(rf'Resumed from \S+/ckpt-{step} at step {step}\.', text)) == 2
  assert len(re.findall(r'epoch 1/1 step 60', text)) == 2
  fingerprints = _fingerprints(text.split('(restart 1)')[1])
  assert set(fingerprints) == {'worker 0', 'worker 1'}
  assert len(set(fingerprints.values())) == 1
  assert os.path.exists(os.path.join(workdir, 'checkpoints', 'ckpt-60.index'))
  for run in ('train', 'eval'):
    assert any(n.startswith('events.out') for n in os.listdir(os.path.join(workdir, run)))
  # The same command as 2 replicas, through main.py's `main` in this process
  # (test_multiworker shows launch_local's two workers end so too).
  with caplog.at_level(logging.INFO, logger='absl'), graph_rewrites():
    status, stderr = main_in_process(capsys, '--config=configs/seg.py', *ARGS,
                                     f'--workdir={tmp_path / "local"}',
                                     '--config.train.steps_per_epoch=60',
                                     '--config.runtime.cpu_devices=2')
  assert status == 0, stderr[-3000:]
  (local,) = re.findall(r'Final weights on local: fingerprint (\S+)', caplog.text)
  for worker in fingerprints.values():
    assert [float(x) for x in worker.split('/')] == pytest.approx(
        [float(x) for x in local.split('/')], rel=1e-4, abs=1e-3)


def _two_held_ports() -> list:
  """Two listening sockets on consecutive ports: a job's two tasks take the base and base + 1."""
  while True:
    first = socket.socket()
    first.bind(('', 0))
    second = socket.socket()
    try:
      second.bind(('', first.getsockname()[1] + 1))
    except OSError:
      first.close()
      second.close()
      continue
    for held in (first, second):
      held.listen()
    return [first, second]


def test_a_taken_port_fails_the_job_fast_with_the_message(slurm, tmp_path):
  """Both tasks' ports are taken, so the job stops at once with the message (with one taken,
  the other task waits in the cluster join until Slurm's KillWait ends it). Each task says so,
  or was ended by srun --kill-on-bad-exit when the other stopped first: on a loaded machine one
  task can still be importing TensorFlow then (seen: task 0 killed by SIGTERM, exit 143; task 1
  stopped by it during start-up, exit 2)."""
  held = _two_held_ports()
  port = held[0].getsockname()[1]
  start = time.time()
  slurm.env['SEGSTREAM_PORT_BASE'] = str(port)
  try:
    job_id = _submit(slurm, str(tmp_path / 'run'), str(tmp_path / 'job.log'))
    job = slurm.wait_for(job_id, ENDED, 180)
  finally:
    del slurm.env['SEGSTREAM_PORT_BASE']
    for listener in held:
      listener.close()
  seconds = time.time() - start
  text = open(tmp_path / 'job.log').read()
  assert job['JobState'] == 'FAILED', text[-3000:]
  reported = [task for task in (0, 1) if f'Error: Port {port + task} on ' in text]
  assert reported and 'is taken' in text, text[-3000:]
  for task in {0, 1} - set(reported):  # srun cancelled the step and ended this task.
    assert 'CANCELLED' in text and f'task {task}: Exited with exit code' in text, text[-3000:]
  assert 'Traceback' not in text
  assert seconds < 180, seconds
