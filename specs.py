"""What the modes that use a trained model take instead of the config: small frozen specs made
from the settled config once, where a mode starts (`describe`). The facts that follow from
several fields (the model's input size, how predict covers a picture, the task) are worked out
here and nowhere else; the record keepers (records/: config.json, the same-run check, HParams)
read the config itself."""

import dataclasses

from data import input_pipeline
from data import rasters
from modeling import sliding
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
class Pictures:
  """What a picture is to the modes that read and draw one."""
  class_names: tuple[str, ...]
  bands: rasters.BandSpec | None  # None: 8-bit RGB photos.
  rgb_bands: tuple[int, ...]  # Which bands make the viewable picture ((): 1, 2, 3).

  @property
  def band_count(self) -> int:
    return self.bands.count if self.bands else 0

  @property
  def nodata(self) -> float | None:
    return self.bands.nodata if self.bands else None


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
  batch_size: int  # Pictures read at once (eval.global_batch_size).
  uncertainty: bool
  probabilities: bool
  vectors: bool
  simplify: float  # Pixels the polygons may move.
  artifact: str  # An exported file to run instead of the workdir's model.


@dataclasses.dataclass(frozen=True)
class Run:
  """Everything a mode that answers with a trained model takes."""
  network: Network
  pictures: Pictures
  prediction: Prediction
  task: tasks.Task


def predict_mode(config) -> str:
  """predict.mode, its empty default resolved: slide when training on crops, else resize."""
  return config.predict.mode or ('slide' if input_pipeline.on_crops(config.data) else 'resize')


def describe(config) -> Run:
  """The specs of a settled config (training/settle.py has checked every field)."""
  data, model, predict = config.data, config.model, config.predict
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
  bands = (rasters.BandSpec(data.bands, tuple(data.read_bands), data.nodata) if data.bands
           else None)
  pictures = Pictures(class_names=tuple(data.class_names), bands=bands,
                      rgb_bands=tuple(data.rgb_bands))
  slides = predict_mode(config) == 'slide'
  window, stride = sliding.window_and_stride(tuple(predict.window), tuple(predict.stride), size)
  prediction = Prediction(
      slides=slides, sizes=(window,) if slides else (tuple(predict.sizes) or (data.image_size,)),
      window=window, stride=stride, evaluation_slides=input_pipeline.on_crops(data),
      scales=tuple(predict.scales) or (1.0,),
      windows_per_call=predict.windows_per_call, flip=predict.flip,
      batch_size=config.eval.global_batch_size, uncertainty=predict.uncertainty,
      probabilities=predict.probabilities, vectors=predict.vectors, simplify=predict.simplify,
      artifact=predict.artifact)
  return Run(network=network, pictures=pictures, prediction=prediction, task=task)
