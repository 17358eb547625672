"""The loop's periodic work as a list of actions, each with one schedule rule (every N steps,
every N epochs, at the last step), run in list order at each step boundary that is due:
evaluate and keep the best model, explain, save a checkpoint, flush the events. Adding one is
one class and one line in `periodic_actions`. The one evaluation path the loop, --mode=eval
and the sidecar share lives here too."""

import dataclasses
import json
import math
import os
import time

from absl import logging
import numpy as np

from data import decode
from interpretability import colormaps
from interpretability import explanation as explain_lib
from interpretability import pointing
from records import atomic
from records import checkpoints
from records import summaries as summaries_lib
from tasks import metrics
import tasks


@dataclasses.dataclass
class Evaluator:
  """One exact pass over the eval split, written to the eval run with the preview's masks."""
  steps: object  # steps.Steps: the model and its eval step.
  eval_data: object  # The distributed eval dataset.
  summaries: summaries_lib.Summaries
  class_names: tuple
  task: tasks.Task
  preview: dict | None  # The fixed validation batch whose masks are drawn.
  class_colors: object

  def __call__(self, step: int) -> dict:
    start = time.perf_counter()
    loss_sum, count, confusion = self.steps.evaluate(self.eval_data)
    results = self.task.summarize(loss_sum, count, confusion, self.class_names)
    results['seconds'] = time.perf_counter() - start
    self.summaries.scalars('eval', step, results)
    if np.ndim(confusion) == 2:  # Classes that exclude each other: one confusion matrix.
      self.summaries.images('eval', step, 'confusion_matrix',
                            colormaps.confusion_image(confusion, self.class_names)[None])
      self.summaries.text('eval', step, 'confusion_table',
                          confusion_table(confusion, self.class_names))
    if self.preview is not None and self.task.per_pixel:
      images = self.preview['viewable']
      predicted = self.task.predicting_as(results, self.class_names).predicted_labels(
          self.steps.model(self.preview['image'], training=False)).numpy()
      for name, masks in (('ground_truth', self.preview['label'].numpy()),
                          ('prediction', predicted)):
        self.summaries.images('eval', step, f'masks/{name}', colormaps.with_legend(
            colormaps.mask_overlay(images, masks, colors=self.class_colors), self.class_names,
            self.class_colors))
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


@dataclasses.dataclass
class BestModelExporter:
  """Keeps the model with the best finite eval.best_metric (the book's ModelCheckpoint keeps
  the lowest validation loss); the best value lives in the checkpointed state."""
  state: checkpoints.TrainState
  model: object
  path: str  # WORKDIR/best_model.keras
  best_metric: str
  writes: bool  # The chief writes; every worker keeps the best value.

  def __call__(self, results: dict) -> None:
    value = results[self.best_metric]
    ranked = value if self.best_metric == 'loss' else -value
    if not math.isfinite(value) or ranked >= float(self.state.best_eval):
      self.state.evals_since_best.assign_add(1)
      return
    self.state.best_eval.assign(ranked)
    self.state.evals_since_best.assign(0)
    if self.writes:
      atomic.save_model(self.model, self.path)
      atomic.write_text(os.path.join(os.path.dirname(self.path), checkpoints.BEST_RESULTS),
                        json.dumps({k: float(v) for k, v in results.items()}, indent=1))
      logging.info('New best validation %s %.4f: exported %s.', self.best_metric, value,
                   os.path.basename(self.path))


@dataclasses.dataclass
class Explainer:
  """Activations, filter patterns and Grad-CAM of the preview to TensorBoard, with each class's
  Grad-CAM energy lift against the pictures' own masks (segmentation)."""
  model: object
  preview: dict
  explain_config: object  # summaries.explain
  class_names: tuple
  task: tasks.Task
  batch_size: int
  summaries: summaries_lib.Summaries
  rgb_bands: tuple = ()  # data.rgb_bands: what a raster model's filter patterns show.

  def __call__(self, step: int) -> float:
    """Returns the seconds it took, also logged and written as `explain/seconds`."""
    start = time.perf_counter()
    images = self.preview['image'].numpy()
    explanation = explain_lib.explain(self.model, images, self.explain_config,
                                      self.class_names, self.task,
                                      batch_size=self.batch_size, rgb_bands=self.rgb_bands)
    lifts = None
    if self.task.per_pixel:
      regions = [explain_lib.mask_regions(decode.label_array(mask), explanation, self.task)
                 for mask in self.preview['label'].numpy()]
      lifts = pointing.summarize(explain_lib.score(explanation, regions))
    summaries_lib.write_explanation(self.summaries, 'eval', step, self.preview['viewable'],
                                    explanation, lifts)
    seconds = time.perf_counter() - start
    self.summaries.scalars('eval', step, {'explain/seconds': seconds})
    logging.info('Explain summaries at step %d took %.1f s (%s); Grad-CAM layer %s%s.', step,
                 seconds, ', '.join(f'{k} {v:.1f}s' for k, v in explanation.seconds.items()),
                 explanation.gradcam_layer, ', energy lift ' + ', '.join(
                     f'{k} {v["energy_lift"]:.2f}' for k, v in lifts.items()) if lifts else '')
    return seconds


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


@dataclasses.dataclass(frozen=True)
class KeepBest:
  """Which model is the best (eval.best_metric) and how long to wait for a better one
  (eval.patience evaluations; 0: never stop early)."""
  metric: str
  patience: int

  @classmethod
  def of(cls, eval_spec) -> 'KeepBest':
    """From the eval section's spec: the one place these two fields are read."""
    return cls(eval_spec.best_metric, eval_spec.patience)


def evaluator(trainer) -> Evaluator:
  """The trainer's Evaluator: the wiring, one place (the loop, --mode=eval and the sidecar)."""
  return Evaluator(trainer.steps, trainer.eval_data, trainer.summaries, trainer.class_names,
                   trainer.task, trainer.preview.batch, trainer.preview.class_colors)


def best_model_exporter(trainer, metric: str) -> BestModelExporter:
  return BestModelExporter(trainer.state, trainer.model,
                           os.path.join(trainer.workdir, checkpoints.BEST_MODEL), metric,
                           trainer.runtime.is_chief)


def stops_early(state: checkpoints.TrainState, patience: int) -> bool:
  """eval.patience evaluations in a row were no better than the best (0: never stop)."""
  return bool(patience) and int(state.evals_since_best) >= patience


def evaluate_and_keep_best(trainer, best: KeepBest, keep_best: bool = True):
  """The one evaluation path (the loop's action, --mode=eval, the sidecar): step -> {'eval':
  results, 'stop_early': ...}, the eval run written and (`keep_best`) the best model kept."""
  evaluate_once, export_best = evaluator(trainer), best_model_exporter(trainer, best.metric)

  def run(step: int) -> dict:
    results = evaluate_once(step)
    if keep_best:
      export_best(results)
    return {'eval': results, 'stop_early': stops_early(trainer.state, best.patience)}
  return run


def evaluate_now(trainer, step: int, best: KeepBest, keep_best: bool) -> dict:
  """Outside the loop: that path with the moving average in the model, the events flushed
  after; the results logged."""
  with trainer.steps.ema_weights():
    results = evaluate_and_keep_best(trainer, best, keep_best)(step)['eval']
  trainer.summaries.flush()
  logging.info('step %d: %s (%d examples)', step, metrics.line(results, 'val'),
               results['num_examples'])
  return results


@dataclasses.dataclass(frozen=True, kw_only=True)
class Every:
  """How often the periodic work runs (0: never): eval.every_epochs,
  summaries.explain_every_epochs, train.checkpoint_every_steps."""
  evaluate_epochs: int
  explain_epochs: int
  checkpoint_steps: int


def periodic_actions(trainer, every: Every, best: KeepBest, explain_config,
                     explain_batch_size: int) -> list[Action]:
  """The training loop's periodic work, in the order it runs at a boundary, each action built
  from the parts of the trainer it needs."""
  def save_checkpoint(step: int) -> None:
    del step  # The state holds it.
    trainer.state.save()

  preview = trainer.preview.batch
  explains = trainer.runtime.is_chief and preview is not None and every.explain_epochs
  explainer = Explainer(trainer.model, preview, explain_config, trainer.class_names,
                        trainer.task, explain_batch_size, trainer.summaries,
                        trainer.preview.rgb_bands)
  return [
      Action('evaluate', Schedule(epochs=every.evaluate_epochs, at_end=True)
             if every.evaluate_epochs else NEVER,
             evaluate_and_keep_best(trainer, best), averaged=True),
      Action('explain', Schedule(epochs=every.explain_epochs, at_end=True) if explains
             else NEVER, lambda step: {'explain_seconds': explainer(step)}, averaged=True),
      Action('checkpoint', Schedule(steps=every.checkpoint_steps, epochs=1, at_end=True),
             save_checkpoint),
      # After the save: a failed event write loses no training.
      Action('flush events', Schedule(epochs=1, at_end=True),
             lambda step: trainer.summaries.flush()),
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
