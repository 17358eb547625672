"""A run's Trainer, built once in phases: runtime -> data -> model and state -> streams and
writers. Each phase takes only what the earlier ones produced and the specs it reads
(specs.py); the config itself is only kept in the workdir and checked against its own."""

import os

from absl import logging
import keras
import tensorflow as tf

from data import crops
from data import input_pipeline
from data import masks
from data import rasters
from data import sources
from data import spec as data_spec
from errors import DataError
from interpretability import colormaps
from modeling import models
from records import checkpoints
from records import summaries as summaries_lib
from records import workdir as workdir_lib
import specs
from tasks import losses
from training import config_checks
from training import optimizers
from training import preemption
from training import runtime
from training import steps as steps_lib
from training.trainer import Data, Preview, Runtime, Trainer


SIDECAR_LOCK = '.continuous_eval.lock'


def build_trainer(spec: specs.Run, workdir: str, sidecar: bool = False) -> Trainer:
  """The runtime, data, model, state, streams and writers of the run `spec` describes.
  A `sidecar` (--mode=continuous_eval) evaluates beside a training: it takes its own lock,
  not the training's, writes no config.json and only the eval run's events."""
  runtime.join_cluster(spec.devices)
  runtime.configure_cpu_devices(spec.devices.cpu_devices)
  run = _runtime(spec, workdir, sidecar)
  # A new run starts from model.weights; a resumed one (or a sidecar) from its checkpoints.
  fresh = not sidecar and not checkpoints.has_checkpoint(
      os.path.join(workdir, checkpoints.CHECKPOINT_DIR))
  if fresh:
    models.check_initial_weights(spec.network)  # In seconds, before any data is read.
  data = _data(spec.data, spec.train, run.scratch)
  model, encoder_layers, optimizer, steps = _model_and_steps(spec, run, data, fresh)
  state = checkpoints.TrainState(
      model, optimizer, os.path.join(workdir, checkpoints.CHECKPOINT_DIR),
      spec.train.max_checkpoints_to_keep, scratch_directory=None if run.is_chief else
      os.path.join(run.scratch, checkpoints.CHECKPOINT_DIR), ema=steps.ema)
  eval_data = run.strategy.distribute_datasets_from_function(
      lambda ctx: input_pipeline.eval_dataset(data.builder, data.pipeline,
                                              spec.eval.global_batch_size, ctx))
  preview = (input_pipeline.preview_batch(data.builder, data.pipeline,
                                         spec.summaries.num_images)
             if spec.summaries.num_images else None)
  if preview is not None:  # What the summaries draw on: a raster's composite of three bands.
    preview['viewable'] = rasters.viewable(preview['image'].numpy(), spec.data.bands,
                                           spec.data.rgb_bands)
  class_colors = colormaps.class_colors(
      len(spec.data.class_names), sources.own_class_colors(spec.data, run.scratch, data.builder))
  train = spec.train

  def train_stream(step: int, ctx: tf.distribute.InputContext) -> tf.data.Dataset:
    return input_pipeline.train_dataset(data.builder, data.pipeline, train.global_batch_size,
                                        spec.seed, step * train.gradient_accumulation_steps,
                                        ctx)
  return Trainer(
      workdir=workdir, runtime=run, data=data, task=spec.task, class_names=spec.data.class_names,
      model=model, encoder_layers=encoder_layers, optimizer=optimizer, steps=steps, state=state,
      summaries=summaries_lib.Summaries(workdir, run.is_chief,
                                        runs=('eval',) if sidecar else ('train', 'eval')),
      train_stream=train_stream, eval_data=eval_data,
      preview=Preview(batch=preview, class_colors=class_colors, rgb_bands=spec.data.rgb_bands))


def _model_and_steps(spec: specs.Run, run: Runtime, data: Data, fresh: bool) -> tuple:
  """(model, its encoder layers, optimizer, step functions), built in the strategy's scope
  from the same seed on every worker."""
  keras.utils.set_random_seed(spec.seed)  # Same initial weights on every worker and rerun.
  network, task, train = spec.network, spec.task, spec.train
  with run.strategy.scope():
    model = models.build_model(network, network.input_size, network.num_classes, run.precision,
                               network.head)
    if fresh:
      models.load_initial_weights(model, network)
      if data.spec.bands:  # After model.weights: this data's statistics, not a source's.
        models.set_band_statistics(model, *sources.band_statistics(data.spec, data.builder))
    encoder_layers = models.encoder_layers(network.name, model)  # Before any is frozen.
    optimizer = optimizers.make_optimizer(
        train, run.precision, data.total_steps,
        [v for layer in encoder_layers for v in layer.trainable_variables])
  logging.info('Model %s: %s parameters.', network.name, f'{model.count_params():,}')
  steps = steps_lib.Steps(  # Builds the optimizer's slots in the strategy's scope.
      run.strategy, model, optimizer, global_batch_size=train.global_batch_size,
      num_classes=network.num_classes, task=task,
      jit_compile=runtime.resolve_jit_compile(spec.devices.jit_compile),
      loss=losses.loss_spec(train, task),
      accumulation_steps=train.gradient_accumulation_steps,
      global_clipnorm=train.global_clipnorm, ema_decay=train.ema_decay,
      class_weights=_class_weights(train.balance_classes, data),
      pixel_class_weights=_pixel_class_weights(train.class_weights, data),
      slide=_eval_slide(spec.prediction))
  return model, encoder_layers, optimizer, steps


def _eval_slide(prediction: specs.Prediction) -> steps_lib.Slide | None:
  """Training on crops, evaluation slides over each whole picture at its own resolution."""
  if not prediction.evaluation_slides:
    return None
  return steps_lib.Slide(prediction.window, prediction.stride, prediction.windows_per_call)


def _class_weights(balance_classes: bool, data: Data) -> tuple | None:
  """train.balance_classes: n / (classes x n_c) per class of the training split (logged)."""
  if not balance_classes:
    return None
  class_names, split = data.spec.class_names, data.pipeline.splits.train
  num_classes = len(class_names)
  labels = [int(label) for label in sources.read_encoded(data.builder, split).map(
      lambda example: example[data.spec.label_feature]).as_numpy_iterator()]
  counts = [labels.count(c) for c in range(num_classes)]
  if 0 in counts:
    raise DataError(f'train.balance_classes: the training split {split!r} has no example of '
                    f'class {class_names[counts.index(0)]!r}.')
  weights = tuple(len(labels) / (num_classes * n) for n in counts)
  logging.info('Class weights (train.balance_classes): %s.', ', '.join(
      f'{name} {w:.3f} ({n} examples)' for name, w, n in zip(class_names, weights, counts)))
  return weights


def _pixel_class_weights(setting, data: Data) -> tuple | None:
  """train.class_weights (`setting`) for a segmenter: None ('none'), median frequency
  balancing of the training masks' pixel counts ('auto'), or the configured tuple (all
  logged)."""
  if setting == 'none':
    return None
  if setting == 'auto':
    counts = sources.class_pixel_counts(data.builder, data.spec, data.pipeline.splits.train)[:-1]
    weights = masks.median_frequency_weights(counts)
  else:
    weights = tuple(float(w) for w in setting)
  logging.info('Class weights of the pixel loss (train.class_weights=%s): %s.', setting,
               ', '.join(f'{n} {w:.3f}' for n, w in zip(data.spec.class_names, weights)))
  return weights


def _runtime(spec: specs.Run, workdir: str, sidecar: bool) -> Runtime:
  """The strategy and this task's place in it; takes the workdir (the chief) and refuses one
  in use by another run or holding checkpoints of another config."""
  strategy = runtime.create_strategy(spec.devices)
  preemption.take_back_signals()
  replicas = strategy.num_replicas_in_sync
  config_checks.check_batch_divides(spec.train.global_batch_size, replicas,
                                    'train.global_batch_size')
  config_checks.check_batch_divides(spec.eval.global_batch_size, replicas,
                                    'eval.global_batch_size')
  is_chief, task = runtime.is_chief(strategy), runtime.task_name(strategy)
  scratch = workdir if is_chief else os.path.join(workdir, 'workers', task.replace(' ', '_'))
  if is_chief:  # Before anything is read or written: one run (and one sidecar) per workdir.
    workdir_lib.ensure_writable_dir(workdir, '--workdir')
    if sidecar:
      workdir_lib.lock(workdir, SIDECAR_LOCK, 'another continuous_eval')
    else:
      workdir_lib.lock(workdir)
  else:
    workdir_lib.ensure_writable_dir(scratch, '--workdir')
  saved_config = os.path.join(workdir, checkpoints.CONFIG_FILE)
  if os.path.isfile(saved_config) and checkpoints.has_checkpoint(
      os.path.join(workdir, checkpoints.CHECKPOINT_DIR)):
    with open(saved_config) as f:
      workdir_lib.check_same_run(spec.record, f.read(), workdir)
  if is_chief and not sidecar:
    checkpoints.write_config(spec.record, workdir)
  run = Runtime(strategy=strategy, precision=runtime.resolve_precision(spec.devices.precision),
                is_chief=is_chief, task=task, num_workers=runtime.num_workers(strategy),
                scratch=scratch)
  logging.info('Config:\n%s', spec.record)
  logging.info('Strategy %s with %d replicas (%d workers) on %s; precision %s; task %s%s.',
               type(strategy).__name__, replicas, run.num_workers,
               ', '.join(strategy.extended.worker_devices), run.precision, task,
               ' (chief)' if is_chief else '')
  return run


def _class_balanced(pipeline: input_pipeline.Pipeline, data_config, builder,
                    train_split: str) -> input_pipeline.Pipeline:
  """The pipeline with class-balanced crops: each class's chance to centre a crop on, from the
  training split's class pixels (counted once, when the set was prepared or here)."""
  counts = sources.class_pixel_counts(builder, data_config, train_split)[:-1]
  chances = crops.class_probabilities(counts, data_config.crop_temperature)
  logging.info('Class-balanced crops (data.crop_temperature=%s, %.0f%% centred): %s.',
               data_config.crop_temperature, 100 * data_config.crop_centred_fraction,
               ', '.join(f'{name} {p:.3f}' for name, p in zip(data_config.class_names, chances)))
  return pipeline._replace(crop=pipeline.crop._replace(
      class_probabilities=chances, centred_fraction=data_config.crop_centred_fraction))


def _data(data_config: data_spec.Data, train: specs.Train, scratch: str) -> Data:
  """The prepared source, its split sizes and the run's length in steps (the `train`
  section's)."""
  builder = sources.prepared_builder(data_config, scratch)
  pipeline = input_pipeline.pipeline(data_config)
  train_split, eval_split, _ = pipeline.splits
  if data_config.crop_sampling == 'class_balanced':
    pipeline = _class_balanced(pipeline, data_config, builder, train_split)
  num_train = sources.num_examples(builder, train_split)
  num_eval = sources.num_examples(builder, eval_split)
  logging.info('Data %s: %d training examples (%s), %d validation examples (%s).',
               data_config.source, num_train, train_split, num_eval, eval_split)
  logging.info('data.cache=%s: %s (%s).', data_config.cache,
               *input_pipeline.resolve_cache(pipeline, num_train,
                                             sources.split_bytes(builder, train_split)))
  examples_per_step = train.global_batch_size * train.gradient_accumulation_steps
  steps_per_epoch = train.steps_per_epoch or num_train // examples_per_step
  if steps_per_epoch < 1:
    raise DataError(f'{train_split!r} has {num_train} examples, fewer than one step of '
                    f'train.global_batch_size={train.global_batch_size} x '
                    f'train.gradient_accumulation_steps={train.gradient_accumulation_steps}: '
                    'lower them or set train.steps_per_epoch.')
  return Data(spec=data_config, builder=builder, pipeline=pipeline, num_train=num_train,
              num_eval=num_eval, examples_per_step=examples_per_step,
              steps_per_epoch=steps_per_epoch,
              total_steps=train.steps or train.epochs * steps_per_epoch)
