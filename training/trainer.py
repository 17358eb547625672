"""The Trainer: what trains and what is evaluated (Model Garden's base_trainer). It holds the
model and its step functions, the checkpointed state and both data streams, with the runtime
and the writers they run in; it holds no config and no schedule (training/controller.py keeps
time). training/build.py makes one."""

import dataclasses
from typing import Callable

import keras
import tensorflow as tf

from data import input_pipeline
from data import spec as data_spec
from records import checkpoints
from records import summaries as summaries_lib
import tasks
from training import steps as steps_lib


@dataclasses.dataclass(frozen=True, kw_only=True)
class Runtime:
  strategy: tf.distribute.Strategy
  precision: str
  is_chief: bool
  task: str  # 'local', or 'worker 1' style inside a cluster.
  num_workers: int
  scratch: str  # Files only this task writes: other workers keep theirs apart from the chief's.


@dataclasses.dataclass(frozen=True, kw_only=True)
class Data:
  spec: data_spec.Data  # The data section it was made from.
  builder: object  # A prepared tfds.core.DatasetBuilder.
  pipeline: input_pipeline.Pipeline  # What the streams read of data.*.
  num_train: int
  num_eval: int
  examples_per_step: int  # train.global_batch_size x train.gradient_accumulation_steps.
  steps_per_epoch: int
  total_steps: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Preview:
  """The fixed validation batch shown at every evaluation, and the colours masks are drawn in."""
  batch: dict | None  # None: summaries.num_images=0.
  class_colors: object  # [classes, 3] uint8: the data's own colours where it has them.
  rgb_bands: tuple = ()  # data.rgb_bands: the bands a raster model's filter patterns show.


@dataclasses.dataclass(frozen=True, kw_only=True)
class Trainer:
  workdir: str
  runtime: Runtime
  data: Data
  task: tasks.Task
  class_names: tuple
  model: keras.Model
  encoder_layers: list  # What model.freeze_encoder_epochs freezes.
  optimizer: keras.optimizers.Optimizer
  steps: steps_lib.Steps
  state: checkpoints.TrainState
  summaries: summaries_lib.Summaries
  # (step, input context) -> this replica's training batches from that step on.
  train_stream: Callable[[int, tf.distribute.InputContext], tf.data.Dataset]
  eval_data: tf.distribute.DistributedDataset
  preview: Preview

  def train_iterator(self, step: int):
    """The distributed training batches from `step` on, each stamped with its ready time."""
    return iter(self.runtime.strategy.distribute_datasets_from_function(
        lambda ctx: steps_lib.with_ready_times(self.train_stream(step, ctx))))
