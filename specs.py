"""What every part of the product takes instead of the config: frozen specs made from the
settled config once, where a mode starts (`describe`). The facts that follow from several
fields (the model's input size, how predict covers a picture, the task) are worked out here and
nowhere else. The record keepers read the config's text (`Run.record`: config.json and the
same-run check). configs/base.py documents every field."""

import dataclasses

from data import input_pipeline
from data import spec as data_spec
from modeling import sliding
from records import checkpoints
import tasks


@dataclasses.dataclass(frozen=True)
class Network:
  """What builds the model (modeling/): the model section as plain values, and what training
  decided of its weights."""
  name: str
  weights: str
  backbone: str
  input_bands: int
  input_nodata: float | None
  sync_batch_norm: bool
  freeze_encoder_epochs: int
  bn_momentum: float
  widths: tuple
  upsampling: str
  alpha: float
  decoder_widths: tuple
  input_size: tuple[int, int]  # (height, width): the crop when training on crops, else the side.
  num_classes: int
  head: str  # The output's activation (the task's).
  averaged_weights: bool  # train.ema_decay > 0: checkpoints hold a moving average to serve.


@dataclasses.dataclass(frozen=True)
class Prediction:
  """How predict, score and export turn a model into masks, every default resolved."""
  slides: bool  # A window slid over the picture at its own resolution; else resized.
  sizes: tuple  # The input sides (or (height, width)) averaged over; sliding: the window.
  window: tuple[int, int]  # (height, width) of the sliding window.
  stride: tuple[int, int]  # (down, across).
  evaluation_slides: bool  # Training on crops: evaluation slides over whole pictures too.
  scales: tuple[float, ...]  # Sliding: the picture scaled by each.
  windows_per_call: int
  flip: bool
  uncertainty: bool
  probabilities: bool
  vectors: bool
  simplify: float  # Pixels the polygons may move.
  artifact: str  # An exported file to run instead of the workdir's model.


@dataclasses.dataclass(frozen=True)
class Train:
  """train.*: the optimizer, schedule, loss, and the run's length and recovery."""
  global_batch_size: int
  epochs: int
  steps_per_epoch: int | None
  steps: int | None
  steps_per_call: int
  gradient_accumulation_steps: int
  global_clipnorm: float
  ema_decay: float
  optimizer: str
  learning_rate: float
  weight_decay: float
  encoder_lr_multiplier: float
  loss: str
  loss_weights: tuple
  focal_gamma: float
  tversky_alpha: float
  tversky_beta: float
  top_k_percent_pixels: float
  label_smoothing: float
  balance_classes: bool
  class_weights: str | tuple
  schedule: str
  warmup_steps: int
  checkpoint_every_steps: int
  max_checkpoints_to_keep: int
  log_every_steps: int
  loss_upper_bound: float | None
  recovery_max_trials: int


@dataclasses.dataclass(frozen=True)
class Eval:
  """eval.*: evaluation in the training loop and the continuous sidecar."""
  global_batch_size: int
  every_epochs: int
  continuous_timeout_s: int
  best_metric: str
  patience: int
  worst_pictures: int


@dataclasses.dataclass(frozen=True)
class Explain:
  """summaries.explain.*: activations, filter patterns and Grad-CAM."""
  activation_layers: tuple
  num_activation_layers: int
  filter_layers: tuple
  num_filter_layers: int
  num_filters: int
  gradcam_layer: str
  top_classes: int
  class_index: str


@dataclasses.dataclass(frozen=True)
class Summaries:
  """summaries.*: what TensorBoard shows besides the losses and metrics."""
  num_images: int
  profile_steps: tuple
  explain_every_epochs: int
  explain: Explain


@dataclasses.dataclass(frozen=True)
class Export:
  """export.*: the formats --mode=export writes, and how each is checked."""
  format: str
  quantize: str
  calibration_pictures: int
  check_pictures: int
  pictures_dtype: str
  min_agreement: float


@dataclasses.dataclass(frozen=True)
class Devices:
  """runtime.*: devices, strategy and precision."""
  strategy: str
  precision: str
  jit_compile: str
  cpu_devices: int
  collective: str
  collective_timeout_s: int


@dataclasses.dataclass(frozen=True)
class Run:
  """The run's specs: each part of the product takes the ones it reads."""
  data: data_spec.Data
  network: Network
  prediction: Prediction
  task: tasks.Task
  train: Train
  eval: Eval
  summaries: Summaries
  export: Export
  devices: Devices
  seed: int
  record: str  # The config as config.json holds it: for the record keepers alone (records/).


def predict_mode(mode: str, data) -> str:
  """predict.mode (`mode`), its empty default resolved: slide when training on crops of the
  data section's pictures, else resize."""
  return mode or ('slide' if input_pipeline.on_crops(data) else 'resize')


def describe(config) -> Run:
  """The specs of a settled config (training/settle.py has checked every field)."""
  data = of_section(config.data, data_spec.Data)
  model, predict = config.model, config.predict
  size = input_pipeline.model_input_size(data)
  task = tasks.of(config)
  network = Network(
      name=model.name, weights=model.weights, backbone=model.backbone,
      input_bands=model.input_bands, input_nodata=model.input_nodata,
      sync_batch_norm=model.sync_batch_norm, freeze_encoder_epochs=model.freeze_encoder_epochs,
      bn_momentum=model.bn_momentum, widths=tuple(model.widths), upsampling=model.upsampling,
      alpha=model.alpha, decoder_widths=tuple(model.decoder_widths), input_size=size,
      num_classes=len(data.class_names), head=task.head_activation,
      averaged_weights=bool(config.train.ema_decay))
  slides = predict_mode(predict.mode, data) == 'slide'
  window, stride = sliding.window_and_stride(tuple(predict.window), tuple(predict.stride), size)
  prediction = Prediction(
      slides=slides, sizes=(window,) if slides else (tuple(predict.sizes) or (data.image_size,)),
      window=window, stride=stride, evaluation_slides=input_pipeline.on_crops(data),
      scales=tuple(predict.scales) or (1.0,),
      windows_per_call=predict.windows_per_call, flip=predict.flip,
      uncertainty=predict.uncertainty,
      probabilities=predict.probabilities, vectors=predict.vectors, simplify=predict.simplify,
      artifact=predict.artifact)
  return Run(data=data, network=network, prediction=prediction, task=task,
             train=of_section(config.train, Train), eval=of_section(config.eval, Eval),
             summaries=of_section(config.summaries, Summaries),
             export=of_section(config.export, Export),
             devices=of_section(config.runtime, Devices), seed=config.seed,
             record=checkpoints.config_record(config))


def _plain(value):
  """A config value as a frozen one: lists (at any depth) become tuples."""
  if isinstance(value, (list, tuple)):
    return tuple(_plain(v) for v in value)
  return value


def of_section(section, record):
  """`record` made from a config section of the same fields (sub-sections into their own)."""
  values = {}
  for field in dataclasses.fields(record):
    value = section[field.name]
    values[field.name] = (of_section(value, field.type) if dataclasses.is_dataclass(field.type)
                          else _plain(value))
  return record(**values)
