"""The training loop: `train` (with or without evaluation) and `evaluate`, on a Job. A run
resumes from the workdir's newest checkpoint, rolls back when the loss diverges, and stops
cleanly on SIGTERM/SIGINT; the periodic work is a list of actions (training/actions.py)."""

import math
import os
import re
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from data import input_pipeline
from data import prepared_checks
from errors import Preempted, TrainingDiverged, UserError, WorkerLost
from errors import is_write_failure, write_failed
from training import checkpoints
from training import actions as actions_lib
from training import preemption
from training import progress
from training import job as job_lib
from training import summaries as summaries_lib
from training import trainer as trainer_lib


class _Diverged(Exception):
  """The training loss is not finite or above train.loss_upper_bound."""


def train(config, workdir: str, evaluate: bool = True) -> dict:
  """Trains for train.steps (or train.epochs), evaluating every eval.every_epochs when
  `evaluate` and stopping early after eval.patience evaluations without a better one; resumes
  from the workdir; returns the last epoch's results."""
  # Signals count from the start: one that arrives while the job is built stops it at the
  # first step boundary (setup takes SIGTERM back from TensorFlow's preemption notifier).
  with preemption.stop_on_signals() as stop:
    job = job_lib.build_job(config, workdir)
    return _errors_explained(job, lambda: _train_with_rollback(job, evaluate, stop))


def evaluate(config, workdir: str) -> dict:
  """One evaluation of the workdir's newest checkpoint."""
  job = job_lib.build_job(config, workdir)
  step = job.state.restore_latest()
  if not job.state.latest:
    raise UserError(f'--mode=eval found no checkpoint in {workdir}/checkpoints: train first '
                    '(--mode=train_and_eval) or point --workdir at a trained run.')
  results = _errors_explained(job, lambda: actions_lib.evaluate_now(job, step, keep_best=False))
  return {'step': step, 'eval': results}


def _train_with_rollback(job: job_lib.Job, evaluate: bool, stop) -> dict:
  step = job.state.restore_latest()
  if step >= job.data.total_steps or actions_lib.stops_early(job.state, job.config.eval.patience):
    logging.info('Training already finished: step %d of %d%s. Nothing to do; use a new workdir '
                 'or raise train.steps (train.epochs, eval.patience) to train more.', step,
                 job.data.total_steps, ' (stopped early)' if step < job.data.total_steps else '')
    return {'step': step}
  if step == 0:
    job.state.save()  # A rollback target if the very first steps diverge.
  job.summaries.hparams('eval', summaries_lib.scalar_fields(job.config),
                        trial_id=os.path.basename(os.path.abspath(job.workdir)))
  actions = actions_lib.periodic_actions(job, evaluate)
  trials = job.config.train.recovery_max_trials
  for failures in range(trials + 1):
    try:
      return _train_from(job, actions, step, stop)
    except _Diverged as diverged:
      if failures == trials:
        raise TrainingDiverged(
            f'Training diverged {failures + 1} times (last: {diverged}); gave up after '
            f'train.recovery_max_trials={trials} rollbacks. Lower train.learning_rate or '
            f'check the data; the last good checkpoint {job.state.latest} and '
            f'{checkpoints.BEST_MODEL} (if any) are intact.') from None
      step = job.state.restore_latest()
      logging.warning('Diverged (%s): rolled back to %s (step %d), retry %d of %d.', diverged,
                      job.state.latest, step, failures + 1, trials)


def _train_from(job: job_lib.Job, actions: list, step: int, stop) -> dict:
  cfg, total, per_epoch = job.config.train, job.data.total_steps, job.data.steps_per_epoch
  iterator = iter(job.runtime.strategy.distribute_datasets_from_function(
      lambda ctx: trainer_lib.with_ready_times(input_pipeline.train_dataset(
          job.data.builder, job.config.data, cfg.global_batch_size, job.config.seed,
          step * cfg.gradient_accumulation_steps, ctx))))
  profile = actions_lib.Profiler(os.path.join(job.workdir, 'train'),
                                 job.config.summaries.profile_steps, job.runtime.is_chief)
  any_worker_stops = actions_lib.StopVote(job.runtime.strategy, job.runtime.num_workers)
  epoch, results, pace = progress.EpochTotals(), {}, progress.Pace()
  while step < total:
    _freeze_encoder_while_due(job, step)
    num_steps = _steps_to_next_boundary(step, per_epoch, total, cfg)
    profile(step)
    sums, seconds = _run_steps(job, iterator, num_steps)
    _check_loss(sums, step + num_steps, cfg.loss_upper_bound)
    step += num_steps
    job.state.step.assign(step)
    epoch.add(sums)
    pace.add(num_steps, seconds)
    _log_call(job, step, num_steps, sums, seconds, pace)
    stopping = any_worker_stops(bool(stop))
    ends_epoch = step % per_epoch == 0 or step >= total  # A run in steps may end mid-epoch.
    train_results = _epoch_results(job, step, epoch.take()) if ends_epoch else None
    done = actions_lib.run_due(actions, step, per_epoch, total, job.trainer.ema_weights,
                               forced=('checkpoint',) if stopping else ())
    if train_results is not None:
      results = {'step': step, 'epoch': -(-step // per_epoch), 'train': train_results, **done}
      logging.info(progress.epoch_line(results, -(-total // per_epoch), pace.elapsed()))
      epoch.restart()  # Evaluation and summaries are not the next epoch's training time.
    if done.get('stop_early'):  # Evaluations fall where a checkpoint is saved too.
      logging.info('Stopped early at step %d: eval.best_metric %s has not improved in the last '
                   'eval.patience=%d evaluations. %s holds the best model; the last checkpoint '
                   'is step %d.', step, job.config.eval.best_metric, job.config.eval.patience,
                   checkpoints.BEST_MODEL, step)
      break
    if stopping and step < total:
      job.summaries.flush()
      any_worker_stops(True)  # A barrier: every worker's save is done before any exits.
      raise Preempted(f'{stop.signal_name or "a stop signal on another worker"} received: '
                      f'saved {job.state.path_at(step)} at step {step} of {total}. '
                      'Rerun the same command to resume.')
  job.summaries.flush()
  logging.info('Final weights on %s: fingerprint %s', job.runtime.task,
               weights_fingerprint(job.model))
  return results


def _freeze_encoder_while_due(job: job_lib.Job, step: int) -> None:
  """The encoder trains from epoch model.freeze_encoder_epochs + 1 on, the decoder always."""
  frozen = step // job.data.steps_per_epoch < job.config.model.freeze_encoder_epochs
  if frozen != bool(job.trainer.frozen):
    job.trainer.freeze(job.encoder_layers if frozen else [])
    logging.info('Step %d: %s.', step, f'{len(job.encoder_layers)} encoder layers frozen until '
                 f'epoch {job.config.model.freeze_encoder_epochs}' if frozen else
                 'the encoder trains too')


def _steps_to_next_boundary(step: int, steps_per_epoch: int, total_steps: int,
                            train_config) -> int:
  """Steps of the next call: at most train.steps_per_call, ending at an epoch, a checkpoint or
  the run's last step."""
  epoch_end = (step // steps_per_epoch + 1) * steps_per_epoch
  every = train_config.checkpoint_every_steps
  return min(train_config.steps_per_call, epoch_end - step, (step // every + 1) * every - step,
             total_steps - step)


def _run_steps(job: job_lib.Job, iterator, num_steps: int) -> tuple:
  """(the call's named sums on the host, its seconds)."""
  start = time.perf_counter()
  sums = progress.host_sums(job.trainer.train_steps(iterator, tf.constant(num_steps)))
  return sums, time.perf_counter() - start


def _check_loss(sums, step: int, bound: float | None) -> None:
  loss = progress.mean_loss(sums)
  if not math.isfinite(loss):
    raise _Diverged(f'the training loss is {loss} at step {step}')
  if bound is not None and loss > bound:
    raise _Diverged(f'the training loss {loss:.4g} at step {step} exceeds '
                    f'train.loss_upper_bound={bound}')


def _log_call(job: job_lib.Job, step: int, num_steps: int, sums, seconds: float,
              pace: progress.Pace) -> None:
  values = progress.call_scalars(sums, num_steps, seconds, job.data.examples_per_step,
                                 job.optimizer, bool(job.config.train.global_clipnorm))
  job.summaries.scalars('train', step, values)
  if step % job.config.train.log_every_steps < num_steps:
    logging.info('step %d/%d: train loss %.4f, %.1f images/s, ETA %s', step,
                 job.data.total_steps, values['loss'], values['images_per_s'],
                 pace.eta(job.data.total_steps - step))


def _epoch_results(job: job_lib.Job, step: int, totals) -> dict:
  """The epoch's training metrics and pace, also written as `epoch/*` scalars."""
  results = progress.epoch_results(*totals, job.config.data.class_names, job.task.per_pixel)
  job.summaries.scalars('train', step, {f'epoch/{k}': v for k, v in results.items()})
  return results


def weights_fingerprint(model: keras.Model) -> str:
  """Sum and sum of squares of all weights: equal on every worker of a healthy job."""
  values = [np.asarray(v.numpy(), np.float64) for v in model.variables]
  return f'{sum(v.sum() for v in values):.10e}/{sum((v * v).sum() for v in values):.10e}'


# What a collective op raises when a peer died, hung past the timeout or cancelled the job.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError,
                tf.errors.DeadlineExceededError, tf.errors.CancelledError)


def _errors_explained(job: job_lib.Job, work):
  """Runs `work()`; in a multi-worker job a lost peer becomes a WorkerLost naming it, and a
  write that fails (a cache file, TensorBoard events) a UserError naming the file."""
  try:
    return work()
  except _PEER_ERRORS as e:
    if job.runtime.num_workers == 1:
      raise
    text = str(e)
    lost = re.search(r'/job:\w+/replica:\d+/task:\d+', text)
    reason = next((line.strip() for line in text.splitlines() if re.search(
        r'abort|reset|timed? ?out|deadline|unavailable|connect', line, re.I)), type(e).__name__)
    raise WorkerLost(
        f'{job.runtime.task} lost contact with {lost.group(0) if lost else "another worker"} '
        f'({reason[:200]}). The job cannot go on; restart every worker with the same command '
        f'to resume from {job.state.latest}.') from None
  except tf.errors.DataLossError as e:
    raise prepared_checks.read_failure(e, job.config.data, job.data.builder.data_dir,
                                       job.state.latest) from None
  except (OSError, tf.errors.OpError) as e:
    if not is_write_failure(e):
      raise
    raise write_failed(e, 'Free disk space or make that folder writable (data.cache, '
                       f'--workdir), then rerun the same command to resume from '
                       f'{job.state.latest}.') from None
