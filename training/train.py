"""train_and_evaluate: wires config -> data -> model -> trainer -> checkpoints and summaries."""

import math
import os
import re
import time

from absl import logging
import keras
import ml_collections
import numpy as np
import tensorflow as tf

from data import input_pipeline
from data import sources
from errors import DataError, Preempted, TrainingDiverged, UserError, WorkerLost
from interpretability import colormaps
from interpretability import explain as explain_lib
from interpretability import pointing
from modeling import models
from training import checkpoints
from training import config_checks
from training import metrics
from training import preemption
from training import runtime
from training import summaries as summaries_lib
from training import trainer as trainer_lib

MODES = ('train', 'eval', 'train_and_eval')


class _Diverged(Exception):
  """The training loss is not finite or above train.loss_upper_bound."""


def _log_metrics(prefix: str, results: dict) -> str:
  shown = [k for k in ('loss', 'pixel_accuracy', 'mean_iou', 'accuracy') if k in results]
  return f'{prefix} ' + ' '.join(f'{k} {results[k]:.4f}' for k in shown)


class _Run:
  """Everything one invocation builds once: strategy, data, model, state, writers."""

  def __init__(self, config, workdir: str):
    runtime.configure_cpu_devices(config.runtime.cpu_devices)
    config_checks.check_config(config)
    self.config = config
    self.workdir = workdir
    self.segmentation = config.task == 'segmentation'
    self._profiling = False
    self.strategy = runtime.create_strategy(config.runtime)
    replicas = self.strategy.num_replicas_in_sync
    config_checks.check_batch_divides(config.train.global_batch_size, replicas,
                                      'train.global_batch_size')
    config_checks.check_batch_divides(config.eval.global_batch_size, replicas,
                                      'eval.global_batch_size')
    self.precision = runtime.resolve_precision(config.runtime.precision)
    self.is_chief = runtime.is_chief(self.strategy)
    self.task = runtime.task_name(self.strategy)
    self.num_workers = runtime.num_workers(self.strategy)
    # Files only this task writes: other workers keep theirs apart from the chief's.
    self.scratch = workdir if self.is_chief else os.path.join(
        workdir, 'workers', self.task.replace(' ', '_'))
    saved_config = os.path.join(workdir, checkpoints.CONFIG_FILE)
    if os.path.isfile(saved_config) and tf.train.latest_checkpoint(
        os.path.join(workdir, checkpoints.CHECKPOINT_DIR)):
      with open(saved_config) as f:
        config_checks.check_same_run(config, f.read(), workdir)
    os.makedirs(workdir, exist_ok=True)
    if self.is_chief:
      checkpoints.write_config(config, workdir)
    logging.info('Config:\n%s', config)
    logging.info('Strategy %s with %d replicas (%d workers) on %s; precision %s; task %s%s.',
                 type(self.strategy).__name__, replicas, self.num_workers,
                 ', '.join(self.strategy.extended.worker_devices), self.precision, self.task,
                 ' (chief)' if self.is_chief else '')

    self.builder = sources.prepared_builder(config.data, self.scratch)
    train_split, eval_split = sources.resolve_splits(config.data)
    self.num_train = sources.num_examples(self.builder, train_split)
    self.num_eval = sources.num_examples(self.builder, eval_split)
    logging.info('Data %s: %d training examples (%s), %d validation examples (%s).',
                 config.data.source, self.num_train, train_split, self.num_eval, eval_split)
    logging.info('data.cache=%s: %s (%s).', config.data.cache,
                 *input_pipeline.resolve_cache(config.data, self.num_train))
    self.steps_per_epoch = (config.train.steps_per_epoch
                            or self.num_train // config.train.global_batch_size)
    if self.steps_per_epoch < 1:
      raise DataError(f'{train_split!r} has {self.num_train} examples, fewer than '
                      f'one batch of train.global_batch_size={config.train.global_batch_size}: '
                      'lower the batch size or set train.steps_per_epoch.')
    self.total_steps = config.train.epochs * self.steps_per_epoch

    num_classes = len(config.data.class_names)
    keras.utils.set_random_seed(config.seed)  # Same initial weights on every worker and rerun.
    with self.strategy.scope():
      self.model = models.build_model(config.model, config.data.image_size, num_classes,
                                      self.precision)
      self.optimizer = trainer_lib.make_optimizer(config.train, self.precision,
                                                  self.total_steps)
      self.optimizer.build(self.model.trainable_variables)
    logging.info('Model %s: %s parameters.', config.model.name,
                 f'{self.model.count_params():,}')
    self.state = checkpoints.TrainState(
        self.model, self.optimizer, os.path.join(workdir, checkpoints.CHECKPOINT_DIR),
        config.train.max_checkpoints_to_keep,
        scratch_directory=None if self.is_chief else os.path.join(self.scratch, checkpoints.CHECKPOINT_DIR))
    self.trainer = trainer_lib.Trainer(self.strategy, self.model, self.optimizer,
                                       config.train.global_batch_size, num_classes,
                                       runtime.resolve_jit_compile(config.runtime.jit_compile),
                                       config.train.jaccard_loss_weight)
    self.summaries = summaries_lib.Summaries(workdir, self.is_chief)
    self.eval_data = self.strategy.distribute_datasets_from_function(
        lambda ctx: input_pipeline.eval_dataset(self.builder, config.data,
                                                config.eval.global_batch_size, ctx))
    self.preview = self._preview_batch(config.summaries.num_images)

  def _preview_batch(self, count: int):
    """A fixed set of validation examples, shown with their masks at every evaluation."""
    if count == 0:
      return None
    uncached = ml_collections.ConfigDict(self.config.data.to_dict())
    uncached.cache = 'none'  # One partial read: a cache would only be filled and dropped.
    ds = input_pipeline.eval_dataset(self.builder, uncached, count)
    return next(iter(ds.take(1)))

  def evaluate(self, step: int) -> dict:
    start = time.perf_counter()
    loss_sum, count, confusion = self.trainer.evaluate(self.eval_data)
    results = metrics.summarize(loss_sum, count, confusion, tuple(self.config.data.class_names),
                                self.segmentation)
    results['seconds'] = time.perf_counter() - start
    self.summaries.scalars('eval', step, results)
    if self.preview is not None and self.segmentation:
      images = self.preview['image'].numpy()
      predicted = np.argmax(self.model(self.preview['image'], training=False), axis=-1)
      self.summaries.images('eval', step, 'masks/ground_truth',
                            colormaps.mask_overlay(images, self.preview['label'].numpy()))
      self.summaries.images('eval', step, 'masks/prediction',
                            colormaps.mask_overlay(images, predicted))
    self.summaries.flush()
    return results

  def explain(self, step: int) -> float:
    """Activations, filter patterns and Grad-CAM of the fixed validation images to TensorBoard,
    with each class's Grad-CAM energy lift against the pictures' own masks (segmentation).

    Returns the seconds it took, which are also logged and written as `explain/seconds`.
    """
    start = time.perf_counter()
    images = self.preview['image'].numpy()
    explanation = explain_lib.explain(self.model, images, self.config.summaries.explain,
                                      tuple(self.config.data.class_names), self.segmentation,
                                      batch_size=self.config.eval.global_batch_size)
    lifts = None
    if self.segmentation:
      regions = [explain_lib.trimap_regions(mask[..., 0], explanation, True)
                 for mask in self.preview['label'].numpy()]
      lifts = pointing.summarize(explain_lib.score(explanation, regions))
    summaries_lib.write_explanation(self.summaries, 'eval', step, images, explanation, lifts)
    seconds = time.perf_counter() - start
    self.summaries.scalars('eval', step, {'explain/seconds': seconds})
    logging.info('Explain summaries at step %d took %.1f s (%s); Grad-CAM layer %s%s.', step,
                 seconds, ', '.join(f'{k} {v:.1f}s' for k, v in explanation.seconds.items()),
                 explanation.gradcam_layer, ', energy lift ' + ', '.join(
                     f'{k} {v["energy_lift"]:.2f}' for k, v in lifts.items()) if lifts else '')
    return seconds

  def _export_if_best(self, results: dict) -> None:
    """Keeps the model with the best finite eval.best_metric (the book's ModelCheckpoint keeps
    the lowest validation loss)."""
    metric = self.config.eval.best_metric
    value = results[metric]
    ranked = value if metric == 'loss' else -value
    if not math.isfinite(value) or ranked >= float(self.state.best_eval):
      return
    self.state.best_eval.assign(ranked)
    if self.is_chief:
      checkpoints.save_model_atomically(self.model, os.path.join(self.workdir,
                                                                 checkpoints.BEST_MODEL))
      logging.info('New best validation %s %.4f: exported %s.', metric, value,
                   checkpoints.BEST_MODEL)

  def _step_scalars(self, sums, num_steps: int, seconds: float) -> dict:
    values = {
        'loss': float(sums[0]) / max(float(sums[1]), 1.0),
        'learning_rate': float(keras.ops.convert_to_numpy(self.optimizer.learning_rate)),
        'images_per_s': num_steps * self.config.train.global_batch_size / seconds,
        'step_time_s': seconds / num_steps,
    }
    if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
      values['loss_scale'] = float(keras.ops.convert_to_numpy(self.optimizer.dynamic_scale))
    return values

  def train(self, evaluate_each_epoch: bool) -> dict:
    """Trains to `total_steps`, resuming from the workdir; rolls back when the loss diverges."""
    step = self.state.restore_latest()
    if step >= self.total_steps:
      logging.info('Training already finished: step %d of %d. Nothing to do; use a new workdir '
                   'or raise train.epochs to train more.', step, self.total_steps)
      return {'step': step}
    if step == 0:
      self.state.save()  # A rollback target if the very first steps diverge.
    failures = 0
    with preemption.stop_on_signals() as stop:
      while True:
        try:
          return self._train_from(step, evaluate_each_epoch, stop)
        except _Diverged as diverged:
          failures += 1
          if failures > self.config.train.recovery_max_trials:
            raise TrainingDiverged(
                f'Training diverged {failures} times (last: {diverged}); gave up after '
                f'train.recovery_max_trials={self.config.train.recovery_max_trials} rollbacks. '
                'Lower train.learning_rate or check the data; the last good checkpoint '
                f'{self.state.latest} and {checkpoints.BEST_MODEL} (if any) are intact.'
            ) from None
          step = self.state.restore_latest()
          logging.warning('Diverged (%s): rolled back to %s (step %d), retry %d of %d.', diverged,
                          self.state.latest, step, failures,
                          self.config.train.recovery_max_trials)

  def _check_loss(self, loss: float, step: int) -> None:
    bound = self.config.train.loss_upper_bound
    if not math.isfinite(loss):
      raise _Diverged(f'the training loss is {loss} at step {step}')
    if bound is not None and loss > bound:
      raise _Diverged(f'the training loss {loss:.4g} at step {step} exceeds '
                      f'train.loss_upper_bound={bound}')

  def _train_from(self, step: int, evaluate_each_epoch: bool, stop) -> dict:
    cfg = self.config.train
    train_data = self.strategy.distribute_datasets_from_function(
        lambda ctx: input_pipeline.train_dataset(self.builder, self.config.data,
                                                 cfg.global_batch_size, self.config.seed,
                                                 step, ctx))
    iterator = iter(train_data)
    epoch_sums, epoch_start, epoch_wait = [0.0, 0.0, 0.0], time.perf_counter(), 0.0
    results = {}
    while step < self.total_steps:
      epoch_end = (step // self.steps_per_epoch + 1) * self.steps_per_epoch
      next_checkpoint = (step // cfg.checkpoint_every_steps + 1) * cfg.checkpoint_every_steps
      num_steps = min(cfg.steps_per_call, epoch_end - step, next_checkpoint - step)
      self._profile(step)
      call_start = time.perf_counter()
      *sums, waited = [v.numpy() for v in self.trainer.train_steps(iterator,
                                                                   tf.constant(num_steps))]
      seconds = time.perf_counter() - call_start
      epoch_wait += float(waited)
      loss = float(sums[0]) / max(float(sums[1]), 1.0)
      self._check_loss(loss, step + num_steps)
      step += num_steps
      self.state.step.assign(step)
      epoch_sums = [a + b for a, b in zip(epoch_sums, sums)]
      self.summaries.scalars('train', step, {**self._step_scalars(sums, num_steps, seconds),
                                             'input_wait_fraction': min(waited / seconds, 1.0)})
      if step % cfg.log_every_steps < num_steps:
        logging.info('step %d/%d: train loss %.4f, %.1f images/s', step, self.total_steps,
                     loss, num_steps * cfg.global_batch_size / seconds)
      stopping = self._any_worker(bool(stop))
      if step == epoch_end:  # Saves a checkpoint itself.
        results = self._end_epoch(step, epoch_sums, time.perf_counter() - epoch_start,
                                  epoch_wait, evaluate_each_epoch)
        epoch_sums, epoch_start, epoch_wait = [0.0, 0.0, 0.0], time.perf_counter(), 0.0
      elif step % cfg.checkpoint_every_steps == 0 or stopping:
        self.state.save()
      if stopping and step < self.total_steps:
        self.summaries.flush()
        raise Preempted(f'{stop.signal_name or "a stop signal on another worker"} received: '
                        f'saved {self.state.latest} at step {step} of {self.total_steps}. '
                        'Rerun the same command to resume.')
    self.summaries.flush()
    logging.info('Final weights on %s: fingerprint %s', self.task, self.weights_fingerprint())
    return results

  def _profile(self, step: int) -> None:
    """A TensorBoard profiler trace of summaries.profile_steps=(first, last) on the chief."""
    steps = tuple(self.config.summaries.profile_steps)
    if not self.is_chief or len(steps) != 2:
      return
    if step >= steps[0] and not self._profiling and step < steps[1]:
      tf.profiler.experimental.start(os.path.join(self.workdir, 'train'))
      self._profiling = True
    elif step >= steps[1] and self._profiling:
      tf.profiler.experimental.stop()
      self._profiling = False
      logging.info('Profiler trace of steps %d-%d written to %s/train (TensorBoard: Profile).',
                   steps[0], step, self.workdir)

  def _any_worker(self, flag: bool) -> bool:
    """True when `flag` is set on any worker, so that all workers stop at the same step."""
    if self.num_workers == 1:
      return flag
    return float(self._count_votes(tf.constant(1.0 if flag else 0.0))) > 0

  @tf.function
  def _count_votes(self, vote):
    votes = self.strategy.run(lambda: tf.identity(vote))
    return self.strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None)

  def weights_fingerprint(self) -> str:
    """Sum and sum of squares of all weights: equal on every worker of a healthy job."""
    values = [np.asarray(v.numpy(), np.float64) for v in self.model.variables]
    return f'{sum(v.sum() for v in values):.10e}/{sum((v * v).sum() for v in values):.10e}'

  def _end_epoch(self, step: int, sums, seconds: float, waited: float, evaluate: bool) -> dict:
    epoch = step // self.steps_per_epoch
    train_results = metrics.summarize(sums[0], sums[1], sums[2],
                                      tuple(self.config.data.class_names), self.segmentation)
    train_results['epoch_images_per_s'] = sums[1] / seconds
    train_results['input_wait_fraction'] = min(waited / seconds, 1.0)
    self.summaries.scalars('train', step, {f'epoch/{k}': v for k, v in train_results.items()})
    line = f'epoch {epoch}/{self.config.train.epochs} step {step}: ' + _log_metrics(
        'train', train_results) + f', {train_results["epoch_images_per_s"]:.1f} images/s, ' \
        f'input wait {100 * train_results["input_wait_fraction"]:.1f}%'
    results = {'step': step, 'epoch': epoch, 'train': train_results}
    last_epoch = step >= self.total_steps
    if evaluate and (epoch % self.config.eval.every_epochs == 0 or last_epoch):
      eval_results = self.evaluate(step)
      self._export_if_best(eval_results)
      line += ' | ' + _log_metrics('val', eval_results) + ' (%d examples)' % eval_results[
          'num_examples']
      results['eval'] = eval_results
    every = self.config.summaries.explain_every_epochs
    if self.is_chief and self.preview is not None and every and (epoch % every == 0
                                                                 or last_epoch):
      results['explain_seconds'] = self.explain(step)
    self.state.save()
    logging.info(line)
    return results


# What a collective op raises when a peer died, hung past the timeout or cancelled the job.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError,
                tf.errors.DeadlineExceededError, tf.errors.CancelledError)


def run(config, workdir: str, mode: str = 'train_and_eval') -> dict:
  """Runs `mode` on `workdir`; a restarted run resumes from the latest checkpoint."""
  if mode not in MODES:
    raise UserError(f'Unknown --mode={mode!r}: use one of {", ".join(MODES)}.')
  job = _Run(config, workdir)
  try:
    return _run_mode(job, mode)
  except _PEER_ERRORS as e:
    if job.num_workers == 1:
      raise
    text = str(e)
    lost = re.search(r'/job:\w+/replica:\d+/task:\d+', text)
    reason = next((line.strip() for line in text.splitlines() if re.search(
        r'abort|reset|timed? ?out|deadline|unavailable|connect', line, re.I)), type(e).__name__)
    raise WorkerLost(
        f'{job.task} lost contact with {lost.group(0) if lost else "another worker"} '
        f'({reason[:200]}). The job cannot go on; restart every worker with the same command '
        f'to resume from {job.state.latest}.') from None


def _run_mode(job: '_Run', mode: str) -> dict:
  workdir = job.workdir
  if mode == 'eval':
    step = job.state.restore_latest()
    if not job.state.latest:
      raise UserError(f'--mode=eval found no checkpoint in {workdir}/checkpoints: train first '
                      '(--mode=train_and_eval) or point --workdir at a trained run.')
    results = job.evaluate(step)
    logging.info('step %d: %s (%d examples)', step, _log_metrics('val', results),
                 results['num_examples'])
    return {'step': step, 'eval': results}
  return job.train(evaluate_each_epoch=(mode == 'train_and_eval'))
