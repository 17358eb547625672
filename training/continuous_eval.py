"""--mode=continuous_eval: a sidecar that evaluates every checkpoint of a running training once,
as it appears (Model Garden's continuous_eval), so the training itself need never pause to
evaluate (eval.every_epochs=0).

It writes what in-loop evaluation writes (the eval run's metrics and pictures, and
best_model.keras when a checkpoint beats the best so far), takes no training lock (one sidecar
per workdir), and keeps what it evaluated in WORKDIR/continuous_eval.json, so a restarted
sidecar goes on where it stopped. It ends after the training's final checkpoint, or after
eval.continuous_timeout_s without a new one.
"""

import json
import os
import time

from absl import logging
import tensorflow as tf

from errors import UserError, first_line
from records import atomic
from records import checkpoints
import specs
from training import actions as actions_lib
from training import build

RECORD_FILE = 'continuous_eval.json'
POLL_S = 2.0


def run(config, workdir: str) -> dict:
  """Evaluates checkpoints as they appear; returns the record {steps: {step: results}, ...}."""
  run = specs.describe(config)
  if run.devices.strategy == 'multi_worker':
    raise UserError('--mode=continuous_eval runs as one process beside the training: set '
                    '--config.runtime.strategy=mirrored (every local GPU) for it.')
  checkpoint_dir = os.path.join(workdir, checkpoints.CHECKPOINT_DIR)
  timeout_s = run.eval.continuous_timeout_s
  if not _wait(lambda: _checkpoints(checkpoint_dir), timeout_s):
    raise UserError(f'--mode=continuous_eval: no checkpoint appeared in {checkpoint_dir} '
                    f'within eval.continuous_timeout_s={timeout_s} s. Start the training (same '
                    '--workdir) first or with it.')
  # After the training prepared the data.
  trainer = build.build_trainer(run, workdir, sidecar=True)
  best = actions_lib.KeepBest.of(run.eval)
  record = _load_record(workdir)
  skipped = set()  # Unreadable checkpoints (removed by the training meanwhile): not retried.

  def pending() -> dict:
    return {step: path for step, path in _checkpoints(checkpoint_dir).items()
            if str(step) not in record['steps'] and step not in skipped}

  while True:
    for step, path in sorted(pending().items()):
      results = _evaluate(trainer, best, path, record)
      if results is None:
        skipped.add(step)
        continue
      record['steps'][str(step)] = results
      atomic.write_text(os.path.join(workdir, RECORD_FILE),
                        json.dumps(record, indent=2, sort_keys=True) + '\n')
      if step >= trainer.data.total_steps:
        logging.info('Evaluated the final checkpoint (step %d): done.', step)
        return record
    if not _wait(pending, timeout_s):
      logging.info('No new checkpoint in %d s (eval.continuous_timeout_s): done.', timeout_s)
      return record


def _evaluate(trainer, best: actions_lib.KeepBest, path: str, record: dict) -> dict | None:
  """Results of the checkpoint at `path` (its moving average when training keeps one); None
  when it vanished or cannot be read (logged)."""
  try:
    trainer.state.checkpoint.restore(path).assert_existing_objects_matched()
  except (tf.errors.OpError, ValueError, AssertionError) as e:
    logging.warning('Skipped %s: it cannot be read (%s); the training may have removed it '
                    '(train.max_checkpoints_to_keep).', path, first_line(e))
    return None
  step = int(trainer.state.step)
  trainer.state.best_eval.assign(record['best_eval'])  # The sidecar's best, not the training's.
  results = actions_lib.evaluate_now(trainer, step, best, keep_best=True)
  record['best_eval'] = float(trainer.state.best_eval)
  return {k: float(v) for k, v in results.items()}


def _checkpoints(checkpoint_dir: str) -> dict:
  """{step: path} of the checkpoints the training's state file lists now."""
  return {checkpoints.checkpoint_step(p): p for p in checkpoints.listed_checkpoints(
      checkpoint_dir) if checkpoints.checkpoint_step(p) >= 0}


def _load_record(workdir: str) -> dict:
  path = os.path.join(workdir, RECORD_FILE)
  if not os.path.isfile(path):
    return {'steps': {}, 'best_eval': float('inf')}
  try:
    with open(path) as f:
      record = json.load(f)
    return {'steps': dict(record['steps']), 'best_eval': float(record['best_eval'])}
  except (OSError, ValueError, KeyError, TypeError) as e:
    logging.warning('%s cannot be read (%s): evaluating every checkpoint again.', path,
                    first_line(e))
    return {'steps': {}, 'best_eval': float('inf')}


def _wait(found, timeout_s: float):
  """`found()` as soon as it is truthy, polled every POLL_S; falsy after `timeout_s`."""
  deadline = time.monotonic() + timeout_s
  while True:
    value = found()
    if value or time.monotonic() >= deadline:
      return value
    time.sleep(POLL_S)
