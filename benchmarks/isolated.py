"""One measurement per child process: device splits and peak memory belong to a process."""

import subprocess
import sys


def json_line(module: str, *args: str) -> str:
  """The first JSON line that `python -m <module> <args>` prints (its logs are dropped)."""
  out = subprocess.run([sys.executable, '-m', module, *args], capture_output=True, text=True,
                       check=True)
  return next(line for line in out.stdout.splitlines() if line.startswith('{'))
