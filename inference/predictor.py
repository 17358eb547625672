"""Masks and class probabilities as predict, score and export make them: one Predictor."""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from data import resize as resize_lib
from inference.artifacts import Artifact
from inference.loading import load_model
from modeling import blocks
from modeling import models
from modeling import sliding
from records import checkpoints
from sizes import sides
import specs
import tasks


class Predictor:
  """Class probabilities averaged over test-time views: input sides or scales, and mirror
  images.

  predict.mode='resize': each picture resized to each side of `predict.sizes` (the model
  rebuilt at each extra side with the same weights); probabilities come back at the largest.
  predict.mode='slide': a window slid over the picture at its own resolution, scaled by each
  of `predict.scales`; probabilities come back at the picture's size. A mirrored copy is a
  second opinion (`predict.flip`). All in float32, whatever the training precision.
  """

  def __init__(self, model: keras.Model, run: specs.Run, task: tasks.Task | None = None):
    prediction = run.prediction
    model = in_float32(model, run.network)
    self.flip = prediction.flip
    self.task = task or run.task  # How labels are read off probabilities.
    self.per_pixel = self.task.per_pixel
    self.slides = prediction.slides
    self.windows_per_call = prediction.windows_per_call
    self.num_classes = model.output_shape[-1]
    self.window, self.stride, self.scales = (prediction.window, prediction.stride,
                                             prediction.scales)
    self.sizes = prediction.sizes
    self.models = {sides(size): model if sides(size) == tuple(model.input_shape[1:3])
                   else rebuilt(model, run.network, sides(size))
                   for size in self.sizes}
    self.filled = blocks.missing_filled(model)  # Before any resize.

  def probabilities(self, pictures: tf.Tensor, exportable: bool = False) -> tf.Tensor:
    """Averaged probabilities of a batch of float32 [N, H, W, C] pictures: segmentation
    [N, S, S', classes] at the largest side (resize) or [N, H, W, classes] (slide);
    classification [N, classes]. `exportable`: resized as every converter takes it."""
    views = []
    for seen, unmirrored in self._views(pictures):
      for probabilities in (self._slid(seen, exportable) if self.slides
                            else self._resized(seen, exportable)):
        views.append(unmirrored(probabilities))
    return tf.add_n(views) / len(views)

  def _views(self, pictures: tf.Tensor):
    """(the pictures as the model sees them: gaps filled, mirrored or not; what puts an answer
    back the right way round) for each view."""
    pictures = self.filled(pictures)
    yield pictures, lambda answer: answer
    if self.flip:
      yield tf.image.flip_left_right(pictures), lambda answer: (
          tf.image.flip_left_right(answer) if self.per_pixel else answer)

  @property
  def reads_in_strips(self) -> bool:
    """Whether `strip_probabilities` can answer: sliding at the picture's own scale."""
    return self.per_pixel and self.slides and self.scales == (1.0,)

  def strip_probabilities(self, rows, height: int, windows_down: int = 8):
    """(top, float32 probabilities [rows, width, classes]) of a picture `height` rows high,
    read `rows(top, bottom)` (whole rows across) a strip of `windows_down` window rows at a
    time, top to bottom: memory follows the strip, not the picture, and the probabilities are
    those the whole picture gets (the same windows, their sums carried across strips, then
    averaged over the windows and views that cover each row); its labels are the task's
    `predicted_labels` of them, as `masks` reads them."""
    window_h = self.window[0]
    corners = sliding.window_corners(tf.constant(max(height, window_h)), window_h,
                                     self.stride[0]).numpy().tolist()
    coverage = np.zeros(max(height, window_h), np.float32)  # Windows over each row.
    for corner in corners:
      coverage[corner:corner + window_h] += 1
    coverage *= 2 if self.flip else 1
    carried = None  # Summed answers of rows that the next strip's windows reach too.
    for first in range(0, len(corners), windows_down):
      top = corners[first]
      last = first + windows_down >= len(corners)
      bottom = min(corners[min(first + windows_down, len(corners)) - 1] + window_h, height)
      sums = self._strip_sums(rows(top, bottom))
      if carried is not None:
        sums[:len(carried)] += carried
      done = len(sums) if last else corners[first + windows_down] - top
      yield top, sums[:done] / coverage[top:top + done, None, None]
      carried = sums[done:]

  def _strip_sums(self, pixels: np.ndarray) -> np.ndarray:
    """float32 [h, W, classes]: a strip's windows' probabilities summed over windows and views,
    each view's divided by its columns' coverage (a mirrored view's windows lie elsewhere)."""
    model = self.models[self.window]
    total = 0.0
    for seen, unmirrored in self._views(tf.constant(pixels[None], tf.float32)):
      sums, _, columns = sliding.slide_sums(
          lambda windows: model(windows, training=False), seen, self.window, self.stride,
          self.num_classes, self.windows_per_call)
      total += unmirrored(sums / tf.reshape(columns, [1, 1, -1, 1]))
    return total[0].numpy()

  def _resized(self, pictures, exportable: bool):
    out_size = max(self.models)
    for size, model in self.models.items():
      probabilities = tf.cast(model(resize_lib.resize_pictures(pictures, size, exportable),
                                    training=False), tf.float32)
      yield (tf.image.resize(probabilities, out_size)
             if self.per_pixel and size != out_size else probabilities)

  def _slid(self, pictures, exportable: bool):
    model = self.models[self.window]
    height, width = tf.shape(pictures)[1], tf.shape(pictures)[2]
    for scale in self.scales:
      size = tf.cast(tf.round(tf.cast(tf.stack([height, width]), tf.float32) * scale), tf.int32)
      scaled = pictures if scale == 1.0 else resize_lib.resize_pictures(
          pictures, (size[0], size[1]), exportable)
      probabilities = sliding.slide(
          lambda windows: model(windows, training=False), scaled, self.window, self.stride,
          self.num_classes, self.windows_per_call)
      yield probabilities if scale == 1.0 else tf.image.resize(probabilities, (height, width))

  def picture_probabilities(self, pictures: list[np.ndarray]):
    """Probabilities of uint8 pictures at their own sizes: [N, ...] as `probabilities` gives
    them (resize), or a list of each picture's [1, H, W, classes] (slide)."""
    answers = self._answers(pictures)
    return answers if self.slides else tf.concat(answers, 0)

  def _answers(self, pictures: list[np.ndarray]) -> list[tf.Tensor]:
    """Each picture's probabilities, [1, ...]; pictures of one size in one batch."""
    by_shape = {}
    for index, picture in enumerate(pictures):
      by_shape.setdefault(picture.shape, []).append(index)
    answers = [None] * len(pictures)
    for indices in by_shape.values():
      batch = self.probabilities(tf.constant(np.stack([pictures[i] for i in indices]),
                                             tf.float32))
      for row, index in enumerate(indices):
        answers[index] = batch[row:row + 1]
    return answers

  def masks(self, pictures: list[np.ndarray]) -> list[np.ndarray]:
    """Label masks at each picture's own size: uint8 class ids 0..classes-1 (multi-label:
    0/1 per class, [H, W, classes])."""
    return [label_masks(probabilities, picture.shape[:2], self.task)[0].numpy()
            for probabilities, picture in zip(self._answers(pictures), pictures)]

  def masks_and_probabilities(self, pictures: list[np.ndarray]) -> list[tuple]:
    """(label mask, float32 probabilities [H, W, classes]) at each picture's own size, the mask
    read off those probabilities."""
    found = []
    for probabilities, picture in zip(self._answers(pictures), pictures):
      resized = tf.image.resize(probabilities, picture.shape[:2])
      found.append((self.task.predicted_labels(resized)[0].numpy(), resized[0].numpy()))
    return found


def rebuilt(model: keras.Model, network: specs.Network, size) -> keras.Model:
  """`model`'s network rebuilt at input side `size`, in float32, with its weights (model.weights
  is not read: nothing is downloaded)."""
  copy = models.build_model(dataclasses.replace(network, weights='random'), size,
                            network.num_classes, head=network.head)
  copy.set_weights(model.get_weights())
  return copy


def in_float32(model: keras.Model, network: specs.Network) -> keras.Model:
  """The model computing in float32, so that predict, score and every export give the same
  masks (and converters take it); one trained in mixed precision is rebuilt."""
  if all(layer.dtype_policy.name == 'float32' for layer in all_layers(model)):
    return model
  return rebuilt(model, network, model.input_shape[1])


def all_layers(model: keras.Model):
  """Every layer, those inside others' attributes included (keras-hub's MiT blocks)."""
  return model._flatten_layers(include_self=False)  # pylint: disable=protected-access


def label_masks(probabilities: tf.Tensor, size, task: tasks.Task) -> tf.Tensor:
  """[N, H, W] uint8 labels at `size` (the task's: argmax class ids, or [N, H, W, classes]
  0/1 labels): probabilities resized bilinearly, then read, so outlines are smooth at the
  picture's resolution (not blocks of the model's pixels) and every label is one the model
  gave there."""
  return task.predicted_labels(tf.image.resize(probabilities, size))


def load(run: specs.Run, workdir: str) -> tuple[Predictor | Artifact, str]:
  """What predict and score answer with, and its name: `predict.artifact` in its own runtime
  (checked to be of the config's classes), else the workdir's model."""
  if run.prediction.artifact:
    artifact = Artifact(run.prediction.artifact)
    artifact.check_fits(run.data.class_names, run.task)
    artifact.task = run.task.from_record(artifact.record)
    return artifact, artifact.file
  model, source = load_model(run.network, workdir)
  return Predictor(model, run, settled_task(run, workdir)), source


def settled_task(run: specs.Run, workdir: str) -> tasks.Task:
  """The task predicting as the workdir's best evaluation chose (tuned thresholds)."""
  return run.task.predicting_as(checkpoints.read_best_results(workdir),
                                    run.data.class_names)
