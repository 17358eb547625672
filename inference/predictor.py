"""Masks and class probabilities as predict, score and export make them: one Predictor."""

import keras
import numpy as np
import tensorflow as tf

from inference.artifacts import Artifact
from inference.loading import load_model, model_input
from modeling import models
import tasks


class Predictor:
  """Class probabilities averaged over test-time input sides and mirror images.

  A model trained on random crops has seen objects larger than a whole picture shows them;
  larger input sides give it that scale back, and a mirrored copy is a second opinion (both
  as configured in `predict.sizes` and `predict.flip`). The model is rebuilt at each extra
  side with the same weights; segmentation probabilities come back at the largest side. All in
  float32, whatever the training precision.
  """

  def __init__(self, model: keras.Model, config):
    model = in_float32(model, config)
    self.sizes = tuple(config.predict.sizes) or (config.data.image_size,)
    self.flip = config.predict.flip
    self.segmentation = tasks.is_segmentation(config)
    self.models = {}
    for size in self.sizes:
      self.models[size] = model if size == model.input_shape[1] else rebuilt(model, config, size)

  def probabilities(self, pictures_at) -> tf.Tensor:
    """`pictures_at(side)`: the float32 [N, side, side, 3] batch; returns averaged probabilities
    (segmentation: [N, S, S, classes] at the largest side S)."""
    out_size = (max(self.sizes),) * 2
    views = []
    for size, model in self.models.items():
      pictures = pictures_at(size)
      for mirrored in ((False, True) if self.flip else (False,)):
        seen = tf.image.flip_left_right(pictures) if mirrored else pictures
        probabilities = tf.cast(model(seen, training=False), tf.float32)
        if self.segmentation:
          if mirrored:
            probabilities = tf.image.flip_left_right(probabilities)
          if size != out_size[0]:
            probabilities = tf.image.resize(probabilities, out_size)
        views.append(probabilities)
    return tf.add_n(views) / len(views)

  def picture_probabilities(self, pictures: list[np.ndarray]) -> tf.Tensor:
    """Probabilities of uint8 pictures at their own sizes, each resized to each side."""
    return self.probabilities(lambda size: model_input(pictures, size))

  def masks(self, pictures: list[np.ndarray]) -> list[np.ndarray]:
    """Label masks (uint8 0..classes-1) at each picture's own size."""
    probabilities = self.picture_probabilities(pictures)
    return [label_masks(probabilities[i:i + 1], picture.shape[:2])[0].numpy()
            for i, picture in enumerate(pictures)]


def rebuilt(model: keras.Model, config, size: int) -> keras.Model:
  """`model`'s network rebuilt at input side `size`, in float32, with its weights (model.weights
  is not read: nothing is downloaded)."""
  model_config = config.model.copy_and_resolve_references()
  model_config.weights = 'random'
  copy = models.build_model(model_config, size, len(config.data.class_names))
  copy.set_weights(model.get_weights())
  return copy


def in_float32(model: keras.Model, config) -> keras.Model:
  """The model computing in float32, so that predict, score and every export give the same
  masks (and converters take it); one trained in mixed precision is rebuilt."""
  if all(layer.dtype_policy.name == 'float32' for layer in all_layers(model)):
    return model
  return rebuilt(model, config, model.input_shape[1])


def all_layers(model: keras.Model):
  """Every layer, those inside others' attributes included (keras-hub's MiT blocks)."""
  return model._flatten_layers(include_self=False)  # pylint: disable=protected-access


def label_masks(probabilities: tf.Tensor, size) -> tf.Tensor:
  """[N, H, W] uint8 argmax labels at `size`: probabilities resized bilinearly, then the
  argmax, so outlines are smooth at the picture's resolution (not blocks of the model's
  pixels) and every label is one the model gave there."""
  probabilities = tf.image.resize(probabilities, size)
  return tf.cast(tf.argmax(probabilities, axis=-1, output_type=tf.int32), tf.uint8)


def load(config, workdir: str) -> tuple[Predictor | Artifact, str]:
  """What predict and score answer with, and its name: `predict.artifact` in its own runtime
  (checked to be of the config's classes), else the workdir's model."""
  if config.predict.artifact:
    artifact = Artifact(config.predict.artifact)
    artifact.check_fits(config.data.class_names, tasks.is_segmentation(config))
    return artifact, artifact.file
  model, source = load_model(config, workdir)
  return Predictor(model, config), source
