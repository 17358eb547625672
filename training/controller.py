"""The Controller holds time (Orbit's Controller): how many steps each call runs, the periodic
actions due at each boundary, the stop vote, freezing the encoder while it is due, and the
rollback when the loss diverges. What trains is the Trainer's (training/trainer.py)."""

import dataclasses
import math
import os
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from errors import Preempted, TrainingDiverged
from records import checkpoints
import specs
from training import actions as actions_lib
from training import progress
from training.trainer import Trainer


class _Diverged(Exception):
  """The training loss is not finite or above train.loss_upper_bound."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Timing:
  """When things happen, in steps (read from the config once, by `build_controller`)."""
  steps_per_epoch: int
  total_steps: int
  steps_per_call: int  # train.steps_per_call: steps in one call of the step function.
  log_every_steps: int
  freeze_encoder_epochs: int  # model.freeze_encoder_epochs
  loss_upper_bound: float | None
  recovery_max_trials: int
  profile_steps: tuple  # summaries.profile_steps: (first, last), or () for none.
  every: actions_lib.Every
  best: actions_lib.KeepBest


def build_controller(run: specs.Run, trainer: Trainer, evaluate: bool, hparams: dict
                     ) -> 'Controller':
  """The run's Controller: the time fields of its specs, the periodic actions and the
  `hparams` (the config's scalar fields, for TensorBoard)."""
  every = actions_lib.Every(evaluate_epochs=run.eval.every_epochs if evaluate else 0,
                            explain_epochs=run.summaries.explain_every_epochs,
                            checkpoint_steps=run.train.checkpoint_every_steps)
  best = actions_lib.KeepBest.of(run.eval)
  train = run.train
  timing = Timing(steps_per_epoch=trainer.data.steps_per_epoch,
                  total_steps=trainer.data.total_steps, steps_per_call=train.steps_per_call,
                  log_every_steps=train.log_every_steps,
                  freeze_encoder_epochs=run.network.freeze_encoder_epochs,
                  loss_upper_bound=train.loss_upper_bound,
                  recovery_max_trials=train.recovery_max_trials,
                  profile_steps=run.summaries.profile_steps, every=every, best=best)
  actions = actions_lib.periodic_actions(trainer, every, best, run.summaries.explain,
                                         run.eval.global_batch_size)
  return Controller(trainer, timing, actions, hparams, clipped=bool(train.global_clipnorm))


class Controller:

  def __init__(self, trainer: Trainer, timing: Timing, actions: list, hparams: dict,
               clipped: bool):
    self.trainer = trainer
    self.timing = timing
    self.actions = actions
    self.hparams = hparams  # The run's scalar config fields, for TensorBoard's HParams.
    self.clipped = clipped  # Whether the gradient norm is logged (train.global_clipnorm).
    self.stop_vote = StopVote(trainer.runtime.strategy, trainer.runtime.num_workers)

  def run(self, stop) -> dict:
    """Trains from the newest checkpoint to the last step; after a divergence, rolls back to
    the last checkpoint up to train.recovery_max_trials times. Returns the last epoch's
    results."""
    state, total, trials = self.trainer.state, self.timing.total_steps, \
        self.timing.recovery_max_trials
    step = state.restore_latest()
    if step >= total or actions_lib.stops_early(state, self.timing.best.patience):
      logging.info('Training already finished: step %d of %d%s. Nothing to do; use a new '
                   'workdir or raise train.steps (train.epochs, eval.patience) to train more.',
                   step, total, ' (stopped early)' if step < total else '')
      return {'step': step}
    if step == 0:
      state.save()  # A rollback target if the very first steps diverge.
    self.trainer.summaries.hparams('eval', self.hparams, trial_id=os.path.basename(
        os.path.abspath(self.trainer.workdir)))
    for failures in range(trials + 1):
      try:
        return self._train_from(step, stop)
      except _Diverged as diverged:
        if failures == trials:
          raise TrainingDiverged(
              f'Training diverged {failures + 1} times (last: {diverged}); gave up after '
              f'train.recovery_max_trials={trials} rollbacks. Lower train.learning_rate or '
              f'check the data; the last good checkpoint {state.latest} and '
              f'{checkpoints.BEST_MODEL} (if any) are intact.') from None
        step = state.restore_latest()
        logging.warning('Diverged (%s): rolled back to %s (step %d), retry %d of %d.',
                        diverged, state.latest, step, failures + 1, trials)

  def _train_from(self, step: int, stop) -> dict:
    trainer, timing = self.trainer, self.timing
    total, per_epoch = timing.total_steps, timing.steps_per_epoch
    iterator = trainer.train_iterator(step)
    profile = Profiler(os.path.join(trainer.workdir, 'train'), timing.profile_steps,
                       trainer.runtime.is_chief)
    epoch, results, pace = progress.EpochTotals(), {}, progress.Pace()
    while step < total:
      self._freeze_encoder_while_due(step)
      num_steps = self._steps_to_next_boundary(step)
      profile(step)
      start = time.perf_counter()
      sums = progress.host_sums(trainer.steps.train_steps(iterator, tf.constant(num_steps)))
      seconds = time.perf_counter() - start
      _check_loss(sums, step + num_steps, timing.loss_upper_bound)
      step += num_steps
      trainer.state.step.assign(step)
      epoch.add(sums)
      pace.add(num_steps, seconds)
      self._log_call(step, num_steps, sums, seconds, pace)
      stopping = self.stop_vote(bool(stop))
      ends_epoch = step % per_epoch == 0 or step >= total  # A run in steps may end mid-epoch.
      train_results = self._epoch_results(step, epoch.take()) if ends_epoch else None
      done = actions_lib.run_due(self.actions, step, per_epoch, total,
                                 trainer.steps.ema_weights,
                                 forced=('checkpoint',) if stopping else ())
      if train_results is not None:
        results = {'step': step, 'epoch': -(-step // per_epoch), 'train': train_results,
                   **done}
        logging.info(progress.epoch_line(results, -(-total // per_epoch), pace.elapsed()))
        epoch.restart()  # Evaluation and summaries are not the next epoch's training time.
      if done.get('stop_early'):  # Evaluations fall where a checkpoint is saved too.
        logging.info('Stopped early at step %d: eval.best_metric %s has not improved in the '
                     'last eval.patience=%d evaluations. %s holds the best model; the last '
                     'checkpoint is step %d.', step, timing.best.metric, timing.best.patience,
                     checkpoints.BEST_MODEL, step)
        break
      if stopping and step < total:
        trainer.summaries.flush()
        self.stop_vote(True)  # A barrier: every worker's save is done before any exits.
        raise Preempted(f'{stop.signal_name or "a stop signal on another worker"} received: '
                        f'saved {trainer.state.path_at(step)} at step {step} of {total}. '
                        'Rerun the same command to resume.')
    trainer.summaries.flush()
    logging.info('Final weights on %s: fingerprint %s', trainer.runtime.task,
                 weights_fingerprint(trainer.model))
    return results

  def _freeze_encoder_while_due(self, step: int) -> None:
    """The encoder trains from epoch model.freeze_encoder_epochs + 1 on, the decoder always."""
    epochs, steps = self.timing.freeze_encoder_epochs, self.trainer.steps
    encoder = self.trainer.encoder_layers
    frozen = step // self.timing.steps_per_epoch < epochs
    if frozen != bool(steps.frozen):
      steps.freeze(encoder if frozen else [])
      logging.info('Step %d: %s.', step, f'{len(encoder)} encoder layers frozen until '
                   f'epoch {epochs}' if frozen else 'the encoder trains too')

  def _steps_to_next_boundary(self, step: int) -> int:
    """Steps of the next call: at most train.steps_per_call, ending at an epoch, a checkpoint
    or the run's last step."""
    timing = self.timing
    epoch_end = (step // timing.steps_per_epoch + 1) * timing.steps_per_epoch
    every = timing.every.checkpoint_steps
    return min(timing.steps_per_call, epoch_end - step, (step // every + 1) * every - step,
               timing.total_steps - step)

  def _log_call(self, step: int, num_steps: int, sums, seconds: float,
                pace: progress.Pace) -> None:
    trainer, total = self.trainer, self.timing.total_steps
    values = progress.call_scalars(sums, num_steps, seconds, trainer.data.examples_per_step,
                                   trainer.optimizer, self.clipped)
    trainer.summaries.scalars('train', step, values)
    if step % self.timing.log_every_steps < num_steps:
      logging.info('step %d/%d: train loss %.4f, %.1f images/s, ETA %s', step, total,
                   values['loss'], values['images_per_s'], pace.eta(total - step))

  def _epoch_results(self, step: int, totals) -> dict:
    """The epoch's training metrics and pace, also written as `epoch/*` scalars."""
    results = progress.epoch_results(*totals, self.trainer.class_names, self.trainer.task)
    self.trainer.summaries.scalars('train', step, {f'epoch/{k}': v for k, v in results.items()})
    return results


def _check_loss(sums, step: int, bound: float | None) -> None:
  loss = progress.mean_loss(sums)
  if not math.isfinite(loss):
    raise _Diverged(f'the training loss is {loss} at step {step}')
  if bound is not None and loss > bound:
    raise _Diverged(f'the training loss {loss:.4g} at step {step} exceeds '
                    f'train.loss_upper_bound={bound}')


def weights_fingerprint(model: keras.Model) -> str:
  """Sum and sum of squares of all weights: equal on every worker of a healthy job. Weights,
  not variables: random-number-generator states (dropout's seeds) are not what was learned."""
  values = [np.asarray(v.numpy(), np.float64) for v in model.weights]
  return f'{sum(v.sum() for v in values):.10e}/{sum((v * v).sum() for v in values):.10e}'


class Profiler:
  """A TensorBoard profiler trace of summaries.profile_steps=(first, last) on the chief."""

  def __init__(self, trace_dir: str, profile_steps: tuple, enabled: bool):
    self.trace_dir = trace_dir
    self.steps = tuple(profile_steps) if enabled and len(profile_steps) == 2 else ()
    self.active = False

  def __call__(self, step: int) -> None:
    if not self.steps:
      return
    if self.steps[0] <= step < self.steps[1] and not self.active:
      tf.profiler.experimental.start(self.trace_dir)
      self.active = True
    elif step >= self.steps[1] and self.active:
      tf.profiler.experimental.stop()
      self.active = False
      logging.info('Profiler trace of steps %d-%d written to %s (TensorBoard: Profile).',
                   self.steps[0], step, self.trace_dir)


class StopVote:
  """True when a stop signal arrived on any worker, so that all workers stop at one step."""

  def __init__(self, strategy: tf.distribute.Strategy, num_workers: int):
    self.strategy = strategy
    self.num_workers = num_workers

  def __call__(self, flag: bool) -> bool:
    if self.num_workers == 1:
      return flag
    return float(self._count_votes(tf.constant(1.0 if flag else 0.0))) > 0

  @tf.function
  def _count_votes(self, vote):
    votes = self.strategy.run(lambda: tf.identity(vote))
    return self.strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None)
