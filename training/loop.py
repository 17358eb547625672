"""The training entry points: `train` (with or without evaluation) and `evaluate` (--mode=eval).
Each builds a Trainer (training/build.py); `train` hands it to a Controller, which resumes from
the workdir's newest checkpoint, rolls back when the loss diverges and stops cleanly on
SIGTERM/SIGINT. Errors a user can act on are explained here."""

import re

import tensorflow as tf

from data import prepared_checks
from errors import UserError, WorkerLost
from errors import is_write_failure, write_failed
from records import summaries as summaries_lib
import specs
from training import actions as actions_lib
from training import build
from training import controller as controller_lib
from training import preemption
from training.trainer import Trainer


def train(config, workdir: str, evaluate: bool = True) -> dict:
  """Trains for train.steps (or train.epochs), evaluating every eval.every_epochs when
  `evaluate` and stopping early after eval.patience evaluations without a better one; resumes
  from the workdir; returns the last epoch's results."""
  # Signals count from the start: one that arrives while the run is built stops it at the
  # first step boundary (setup takes SIGTERM back from TensorFlow's preemption notifier).
  with preemption.stop_on_signals() as stop:
    run = specs.describe(config)
    trainer = build.build_trainer(run, workdir)
    controller = controller_lib.build_controller(run, trainer, evaluate,
                                                 summaries_lib.scalar_fields(config))
    return _errors_explained(trainer, lambda: controller.run(stop))


def evaluate(config, workdir: str) -> dict:
  """One evaluation of the workdir's newest checkpoint."""
  run = specs.describe(config)
  trainer = build.build_trainer(run, workdir)
  step = trainer.state.restore_latest()
  if not trainer.state.latest:
    raise UserError(f'--mode=eval found no checkpoint in {workdir}/checkpoints: train first '
                    '(--mode=train_and_eval) or point --workdir at a trained run.')
  best = actions_lib.KeepBest.of(run.eval)
  results = _errors_explained(trainer, lambda: actions_lib.evaluate_now(
      trainer, step, best, keep_best=False))
  return {'step': step, 'eval': results}


# What a collective op raises when a peer died, hung past the timeout or cancelled the job.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError,
                tf.errors.DeadlineExceededError, tf.errors.CancelledError)


def _errors_explained(trainer: Trainer, work):
  """Runs `work()`; in a multi-worker job a lost peer becomes a WorkerLost naming it, and a
  write that fails (a cache file, TensorBoard events) a UserError naming the file."""
  try:
    return work()
  except _PEER_ERRORS as e:
    if trainer.runtime.num_workers == 1:
      raise
    text = str(e)
    lost = re.search(r'/job:\w+/replica:\d+/task:\d+', text)
    reason = next((line.strip() for line in text.splitlines() if re.search(
        r'abort|reset|timed? ?out|deadline|unavailable|connect', line, re.I)), type(e).__name__)
    raise WorkerLost(
        f'{trainer.runtime.task} lost contact with {lost.group(0) if lost else "another worker"} '
        f'({reason[:200]}). The job cannot go on; restart every worker with the same command '
        f'to resume from {trainer.state.latest}.') from None
  except tf.errors.DataLossError as e:
    raise prepared_checks.read_failure(e, trainer.data.spec, trainer.data.builder.data_dir,
                                       trainer.state.latest) from None
  except (OSError, tf.errors.OpError) as e:
    if not is_write_failure(e):
      raise
    raise write_failed(e, 'Free disk space or make that folder writable (data.cache, '
                       f'--workdir), then rerun the same command to resume from '
                       f'{trainer.state.latest}.') from None
