"""The loop's periodic work as a list of actions, each with one schedule rule (every N steps,
every N epochs, at the last step), run in list order at each step boundary that is due:
evaluate and keep the best model, explain, save a checkpoint, flush the events. Adding one is
one class and one line in `periodic_actions`. Also: the profiler and the stop vote, which the
loop calls at every boundary."""

import dataclasses
import math
import os
import time

from absl import logging
import numpy as np
import tensorflow as tf

from interpretability import colormaps
from interpretability import explanation as explain_lib
from interpretability import pointing
from training import atomic
from training import checkpoints
from training import metrics
from training import summaries as summaries_lib


class Evaluator:
  """One exact pass over the eval split, written to the eval run with the preview's masks."""

  def __init__(self, job):
    self.job = job

  def __call__(self, step: int) -> dict:
    job, start = self.job, time.perf_counter()
    loss_sum, count, confusion = job.trainer.evaluate(job.eval_data)
    results = metrics.summarize(loss_sum, count, confusion, tuple(job.config.data.class_names),
                                job.segmentation)
    results['seconds'] = time.perf_counter() - start
    job.summaries.scalars('eval', step, results)
    names = tuple(job.config.data.class_names)
    job.summaries.images('eval', step, 'confusion_matrix',
                         colormaps.confusion_image(confusion, names)[None])
    job.summaries.text('eval', step, 'confusion_table', confusion_table(confusion, names))
    if job.preview is not None and job.segmentation:
      images = job.preview['image'].numpy()
      predicted = np.argmax(job.model(job.preview['image'], training=False), axis=-1)
      for name, masks in (('ground_truth', job.preview['label'].numpy()),
                          ('prediction', predicted)):
        job.summaries.images('eval', step, f'masks/{name}', colormaps.with_legend(
            colormaps.mask_overlay(images, masks, colors=job.class_colors), names,
            job.class_colors))
    return results


def confusion_table(confusion: np.ndarray, class_names: tuple) -> str:
  """Markdown: rows are the true classes, columns the predicted ones, each row's shares."""
  confusion = np.asarray(confusion, np.float64)
  shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1.0)
  lines = ['| truth \\ predicted | ' + ' | '.join(class_names) + ' |',
           '|---' * (len(class_names) + 1) + '|']
  lines += [f'| **{name}** | ' + ' | '.join(f'{v:.3f}' for v in row) + ' |'
            for name, row in zip(class_names, shares)]
  return '\n'.join(lines)


class BestModelExporter:
  """Keeps the model with the best finite eval.best_metric (the book's ModelCheckpoint keeps
  the lowest validation loss); the best value lives in the checkpointed state."""

  def __init__(self, job):
    self.job = job

  def __call__(self, results: dict) -> None:
    job, metric = self.job, self.job.config.eval.best_metric
    value = results[metric]
    ranked = value if metric == 'loss' else -value
    if not math.isfinite(value) or ranked >= float(job.state.best_eval):
      return
    job.state.best_eval.assign(ranked)
    if job.runtime.is_chief:
      atomic.save_model(job.model, os.path.join(job.workdir, checkpoints.BEST_MODEL))
      logging.info('New best validation %s %.4f: exported %s.', metric, value,
                   checkpoints.BEST_MODEL)


class Explainer:
  """Activations, filter patterns and Grad-CAM of the preview to TensorBoard, with each class's
  Grad-CAM energy lift against the pictures' own masks (segmentation)."""

  def __init__(self, job):
    self.job = job

  def __call__(self, step: int) -> float:
    """Returns the seconds it took, also logged and written as `explain/seconds`."""
    job, start = self.job, time.perf_counter()
    images = job.preview['image'].numpy()
    explanation = explain_lib.explain(job.model, images, job.config.summaries.explain,
                                      tuple(job.config.data.class_names), job.segmentation,
                                      batch_size=job.config.eval.global_batch_size)
    lifts = None
    if job.segmentation:
      regions = [explain_lib.mask_regions(mask[..., 0], explanation, True)
                 for mask in job.preview['label'].numpy()]
      lifts = pointing.summarize(explain_lib.score(explanation, regions))
    summaries_lib.write_explanation(job.summaries, 'eval', step, images, explanation, lifts)
    seconds = time.perf_counter() - start
    job.summaries.scalars('eval', step, {'explain/seconds': seconds})
    logging.info('Explain summaries at step %d took %.1f s (%s); Grad-CAM layer %s%s.', step,
                 seconds, ', '.join(f'{k} {v:.1f}s' for k, v in explanation.seconds.items()),
                 explanation.gradcam_layer, ', energy lift ' + ', '.join(
                     f'{k} {v["energy_lift"]:.2f}' for k, v in lifts.items()) if lifts else '')
    return seconds


class Profiler:
  """A TensorBoard profiler trace of summaries.profile_steps=(first, last) on the chief."""

  def __init__(self, job):
    self.job = job
    self.active = False

  def __call__(self, step: int) -> None:
    steps = tuple(self.job.config.summaries.profile_steps)
    if not self.job.runtime.is_chief or len(steps) != 2:
      return
    if steps[0] <= step < steps[1] and not self.active:
      tf.profiler.experimental.start(os.path.join(self.job.workdir, 'train'))
      self.active = True
    elif step >= steps[1] and self.active:
      tf.profiler.experimental.stop()
      self.active = False
      logging.info('Profiler trace of steps %d-%d written to %s/train (TensorBoard: Profile).',
                   steps[0], step, self.job.workdir)


class StopVote:
  """True when a stop signal arrived on any worker, so that all workers stop at one step."""

  def __init__(self, job):
    self.strategy = job.runtime.strategy
    self.num_workers = job.runtime.num_workers

  def __call__(self, flag: bool) -> bool:
    if self.num_workers == 1:
      return flag
    return float(self._count_votes(tf.constant(1.0 if flag else 0.0))) > 0

  @tf.function
  def _count_votes(self, vote):
    votes = self.strategy.run(lambda: tf.identity(vote))
    return self.strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """When an action is due: every `steps` steps, every `epochs` epochs, and/or at the last
  step (0 / False: not by that rule)."""
  steps: int = 0
  epochs: int = 0
  at_end: bool = False

  def due(self, step: int, steps_per_epoch: int, total_steps: int) -> bool:
    epoch_end = step % steps_per_epoch == 0
    return bool((self.at_end and step >= total_steps)
                or (self.steps and step % self.steps == 0)
                or (self.epochs and epoch_end and (step // steps_per_epoch) % self.epochs == 0))


NEVER = Schedule()


@dataclasses.dataclass
class Action:
  """`run(step)` when `schedule` is due; `averaged`: with the moving average of the weights in
  the model (what is evaluated, exported and explained)."""
  name: str
  schedule: Schedule
  run: object  # step -> dict of results for the epoch's log (or None)
  averaged: bool = False


def periodic_actions(job, evaluate: bool) -> list[Action]:
  """The training loop's periodic work, in the order it runs at a boundary."""
  config, every = job.config, job.config.eval.every_epochs
  evaluator, export_best = Evaluator(job), BestModelExporter(job)

  def evaluate_and_keep_best(step: int) -> dict:
    results = evaluator(step)
    export_best(results)
    return {'eval': results}

  def save_checkpoint(step: int) -> None:
    del step  # The state holds it.
    job.state.save()

  explain_every = config.summaries.explain_every_epochs
  explains = job.runtime.is_chief and job.preview is not None and explain_every
  explainer = Explainer(job)
  return [
      Action('evaluate', Schedule(epochs=every, at_end=True) if evaluate and every else NEVER,
             evaluate_and_keep_best, averaged=True),
      Action('explain', Schedule(epochs=explain_every, at_end=True) if explains else NEVER,
             lambda step: {'explain_seconds': explainer(step)}, averaged=True),
      Action('checkpoint', Schedule(steps=config.train.checkpoint_every_steps, epochs=1),
             save_checkpoint),
      # After the save: a failed event write loses no training.
      Action('flush events', Schedule(epochs=1), lambda step: job.summaries.flush()),
  ]


def run_due(actions: list[Action], step: int, steps_per_epoch: int, total_steps: int,
            average_weights, forced: tuple = ()) -> dict:
  """Runs the actions due at `step` (and those named in `forced`): the averaged ones first,
  together inside one `average_weights()`, then the others, each group in list order.
  Returns their results merged."""
  due = [a for a in actions
         if a.name in forced or a.schedule.due(step, steps_per_epoch, total_steps)]
  results = {}
  if any(a.averaged for a in due):
    with average_weights():
      for action in (a for a in due if a.averaged):
        results.update(action.run(step) or {})
  for action in (a for a in due if not a.averaged):
    results.update(action.run(step) or {})
  return results
