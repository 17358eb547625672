"""Runs N workers of one multi-worker job on this machine, each a `main.py` process.

    python -m launch.launch_local --workers=2 -- --config=configs/seg.py --workdir=runs/mw ...

Picks free localhost ports, gives each process its TF_CONFIG (and
`--config.runtime.strategy=multi_worker`), prefixes each log line with its task, and
fails the whole group as soon as one worker fails. Exit status: the first failure's, or 0.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags

from launch import tf_config

flags.DEFINE_integer('workers', 2, 'Worker processes to start.')
flags.DEFINE_integer('grace_s', 20, 'Seconds the others get to stop after one fails.')
FLAGS = flags.FLAGS
MAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'main.py')


def free_ports(count: int) -> list[int]:
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('localhost', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _stream(process: subprocess.Popen, prefix: str) -> None:
  for line in process.stdout:
    sys.stdout.write(f'{prefix} {line}')
    sys.stdout.flush()


def launch(num_workers: int, main_args: list[str], grace_s: float = 20.0,
           extra_env: dict | None = None) -> int:
  """Starts the workers and waits; returns the job's exit status."""
  hosts = [f'localhost:{port}' for port in free_ports(num_workers)]
  processes, threads = [], []
  for task in range(num_workers):
    env = dict(os.environ, TF_CONFIG=tf_config.tf_config(hosts, task), **(extra_env or {}))
    process = subprocess.Popen(
        [sys.executable, MAIN, *main_args, '--config.runtime.strategy=multi_worker'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    processes.append(process)
    thread = threading.Thread(target=_stream, args=(process, f'[worker {task}]'), daemon=True)
    thread.start()
    threads.append(thread)
  status = 0
  try:
    while any(p.poll() is None for p in processes):
      failed = [p for p in processes if p.poll() not in (None, 0)]
      if failed:
        status = failed[0].returncode
        task = processes.index(failed[0])
        sys.stdout.write(f'[launcher] worker {task} exited with status {status}: stopping the '
                         'others.\n')
        _stop(processes, grace_s)
        break
      time.sleep(0.2)
  except KeyboardInterrupt:
    _stop(processes, grace_s)
    status = 130
  for thread in threads:
    thread.join(timeout=5)
  if status == 0:
    status = next((p.returncode for p in processes if p.returncode), 0)
  return status


def _stop(processes: list[subprocess.Popen], grace_s: float) -> None:
  """SIGTERM (they checkpoint at the next step), then SIGKILL after `grace_s`."""
  for p in processes:
    if p.poll() is None:
      os.killpg(p.pid, signal.SIGTERM)
  deadline = time.time() + grace_s
  for p in processes:
    try:
      p.wait(timeout=max(0.1, deadline - time.time()))
    except subprocess.TimeoutExpired:
      os.killpg(p.pid, signal.SIGKILL)
      p.wait()


def main(argv):
  sys.exit(launch(FLAGS.workers, argv[1:], FLAGS.grace_s))


if __name__ == '__main__':
  app.run(main)
