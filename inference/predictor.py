"""Masks and class probabilities as predict, score and export make them: one Predictor."""

import keras
import numpy as np
import tensorflow as tf

from inference.loading import model_input
from modeling import models
import tasks


class Predictor:
  """Class probabilities averaged over test-time input sides and mirror images.

  A model trained on random crops has seen objects larger than a whole picture shows them;
  larger input sides give it that scale back, and a mirrored copy is a second opinion (both
  as configured in `predict.sizes` and `predict.flip`). The model is rebuilt at each extra
  side with the same weights; segmentation probabilities come back at the largest side.
  """

  def __init__(self, model: keras.Model, config):
    self.sizes = tuple(config.predict.sizes) or (config.data.image_size,)
    self.flip = config.predict.flip
    self.segmentation = tasks.is_segmentation(config)
    self.models = {}
    for size in self.sizes:
      if size == model.input_shape[1]:
        self.models[size] = model
      else:
        self.models[size] = models.build_model(config.model, size, len(config.data.class_names))
        self.models[size].set_weights(model.get_weights())

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

  def masks(self, pictures: list[np.ndarray]) -> list[np.ndarray]:
    """Label masks (uint8 0..classes-1) at each picture's own size."""
    probabilities = self.probabilities(lambda size: model_input(pictures, size))
    return [label_masks(probabilities[i:i + 1], picture.shape[:2])[0].numpy()
            for i, picture in enumerate(pictures)]


def label_masks(probabilities: tf.Tensor, size) -> tf.Tensor:
  """[N, H, W] uint8 argmax labels at `size`: probabilities resized bilinearly, then the
  argmax, so outlines are smooth at the picture's resolution (not blocks of the model's
  pixels) and every label is one the model gave there."""
  probabilities = tf.image.resize(probabilities, size)
  return tf.cast(tf.argmax(probabilities, axis=-1, output_type=tf.int32), tf.uint8)
