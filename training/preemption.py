"""SIGTERM and SIGINT become a request to stop at the next step boundary, after a checkpoint.

Cluster schedulers send SIGTERM before killing a preempted job; Ctrl-C sends SIGINT. The
first signal is recorded and the default handlers come back, so a second one stops the
process at once.
"""

import contextlib
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_handlers = []  # The handler of each stop_on_signals block now running, innermost last.


class StopRequest:
  """Set by a signal; the training loop polls it between calls."""

  def __init__(self):
    self._event = threading.Event()
    self.signal_name = None

  def set(self, signal_name: str) -> None:
    self.signal_name = signal_name
    self._event.set()

  def __bool__(self) -> bool:
    return self._event.is_set()


@contextlib.contextmanager
def stop_on_signals():
  """Yields a StopRequest that SIGTERM/SIGINT set while the block runs (main thread only)."""
  request = StopRequest()
  if threading.current_thread() is not threading.main_thread():
    yield request
    return
  previous = {s: signal.getsignal(s) for s in SIGNALS}

  def handle(signum, frame):
    del frame
    request.set(signal.Signals(signum).name)
    for s, handler in previous.items():
      signal.signal(s, handler)

  for s in SIGNALS:
    signal.signal(s, handle)
  _handlers.append((request, handle))
  try:
    yield request
  finally:
    _handlers.pop()
    for s, handler in previous.items():
      signal.signal(s, handler)


def take_back_signals() -> None:
  """Reinstalls the running block's handlers: a multi-worker strategy starts TensorFlow's
  preemption notifier, which takes SIGTERM over and would swallow it."""
  if not _handlers or threading.current_thread() is not threading.main_thread():
    return
  request, handle = _handlers[-1]
  if not request:
    for s in SIGNALS:
      signal.signal(s, handle)
