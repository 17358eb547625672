"""What the training log and the train run show of progress: each call's sums kept by name
through the epoch, the pace and the time left, the per-call scalars and the epoch line."""

import collections
import datetime
import time

import keras
import numpy as np

import tasks
from tasks import metrics
from training.steps import StepSums


def host_sums(sums: StepSums) -> StepSums:
  """A call's sums as numbers on the host, still by name."""
  return StepSums(*(np.asarray(value) for value in sums))


def mean_loss(sums: StepSums) -> float:
  return float(sums.loss_sum) / max(float(sums.count), 1.0)


class EpochTotals:
  """The sums of the calls since the epoch began, and its training time."""

  def __init__(self):
    self.restart()

  def restart(self) -> None:
    self.sums, self.start = StepSums(0.0, 0.0, 0.0, 0.0, 0.0), time.perf_counter()

  def add(self, sums: StepSums) -> None:
    self.sums = StepSums(*(total + more for total, more in zip(self.sums, sums)))

  def take(self) -> tuple[StepSums, float]:
    """(sums, training seconds) of the epoch."""
    return self.sums, time.perf_counter() - self.start


class Pace:
  """Time since the loop (re)started, and the time left at the rate of the recent calls (the
  first call, which traces the step function, only until there is another)."""

  def __init__(self, window: int = 20):
    self.start = time.perf_counter()
    self.recent = collections.deque(maxlen=window)
    self.first = None

  def add(self, num_steps: int, seconds: float) -> None:
    if self.first is None:
      self.first = (num_steps, seconds)
    else:
      self.recent.append((num_steps, seconds))

  def elapsed(self) -> str:
    return _clock(time.perf_counter() - self.start)

  def eta(self, steps_left: int) -> str:
    calls = self.recent or [self.first]
    steps = sum(n for n, _ in calls)
    return _clock(steps_left * sum(s for _, s in calls) / max(steps, 1))


def _clock(seconds: float) -> str:
  return str(datetime.timedelta(seconds=round(seconds)))


def call_scalars(sums: StepSums, num_steps: int, seconds: float, examples_per_step: int,
                 optimizer: keras.optimizers.Optimizer, clipping: bool) -> dict:
  """The train run's scalars of one call."""
  values = {
      'loss': mean_loss(sums),
      'learning_rate': float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
      'images_per_s': num_steps * examples_per_step / seconds,
      'step_time_s': seconds / num_steps,
      'input_wait_fraction': min(float(sums.waited_s) / seconds, 1.0),
  }
  if clipping:
    values['grad_norm'] = float(sums.grad_norm_sum) / num_steps  # Before clipping.
  if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
    values['loss_scale'] = float(keras.ops.convert_to_numpy(optimizer.dynamic_scale))
  return values


def epoch_results(sums: StepSums, seconds: float, class_names: tuple, task: tasks.Task) -> dict:
  """The epoch's training metrics and pace."""
  results = task.summarize(sums.loss_sum, sums.count, sums.confusion, class_names)
  results['epoch_images_per_s'] = sums.count / seconds
  results['input_wait_fraction'] = min(float(sums.waited_s) / seconds, 1.0)
  return results


def epoch_line(results: dict, epochs: int, elapsed: str) -> str:
  """`epoch E/N step S: train ... | val ...`: one line per epoch in the log."""
  train = results['train']
  line = (f'epoch {results["epoch"]}/{epochs} step {results["step"]}: '
          f'{metrics.line(train, "train")}, {train["epoch_images_per_s"]:.1f} images/s, '
          f'input wait {100 * train["input_wait_fraction"]:.1f}%, elapsed {elapsed}')
  if 'eval' in results:
    evaluation = results['eval']
    line += f' | {metrics.line(evaluation, "val")} ({evaluation["num_examples"]:.0f} examples)'
  return line
