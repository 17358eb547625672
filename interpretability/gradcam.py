"""Grad-CAM (book 9.4.3) for classifiers and Seg-Grad-CAM (Vinogradova et al., 2020).

Channel weights are the spatial mean of the score's gradient with respect to a feature map;
the heatmap is the ReLU of the weighted channel sum, scaled to [0, 1] by its peak (the peak is
returned too: 0 means the map is blank). For segmentation the score of class c is the sum of
its logits (pre-softmax) over a pixel set. Scores and gradients are float32 whatever the
model's compute dtype.
"""

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from interpretability import activations
from interpretability import colormaps
import tasks


class Heatmaps(NamedTuple):
  maps: np.ndarray  # (..., h, w) in [0, 1]
  peaks: np.ndarray  # (...,) the maps' maxima before scaling; 0: blank


def concatenate(parts: list) -> Heatmaps:
  """Heatmaps of consecutive batches as one."""
  return Heatmaps(np.concatenate([p.maps for p in parts]),
                  np.concatenate([p.peaks for p in parts]))


def _is_rectified(layer: keras.layers.Layer) -> bool:
  """A layer whose output has passed a ReLU (ReLU6 included)."""
  if isinstance(layer, keras.layers.ReLU):
    return True
  return getattr(layer, 'activation', None) is keras.activations.relu


def _side(layer: keras.layers.Layer) -> int | None:
  """The side of a layer's one 4-D output; None for other outputs (a feature pyramid's dict)."""
  shape = getattr(layer.output, 'shape', ())
  return shape[1] if len(shape) == 4 else None


def shortcut_projections(model: keras.Model) -> set[str]:
  """1x1 convolutions that feed an Add: the shortcut branch of a residual block."""
  found = set()
  for layer in model.layers:
    if isinstance(layer, keras.layers.Add):
      for node in layer._inbound_nodes:  # pylint: disable=protected-access
        for tensor in node.input_tensors:
          source = tensor._keras_history.operation  # pylint: disable=protected-access
          if isinstance(source, keras.layers.Conv2D) and tuple(source.kernel_size) == (1, 1):
            found.add(source.name)
  return found


def default_layer(model: keras.Model, task: tasks.Task) -> str:
  """The layer Grad-CAM reads when the config names none.

  Classifier: the feature map the global pooling reads (the book's last conv block output).
  Segmenter: the last rectified (post-ReLU) feature map below the input's resolution: the
  decoder's last block before the full-resolution stage that renders the mask, where features
  are both semantic and fine (a model without one: its last rectified map before the logits).
  Never a shortcut projection: on a trained U-Net the bottleneck's maps are blank for the pet
  (docs/results.md, "Which layer Grad-CAM reads", has the measurements).
  """
  layers = [l for l in model.layers[1:] if _side(l)]
  if not task.per_pixel:
    return layers[-1].name
  head = {model.layers[-1]} | _class_score_layers(model)
  shortcuts = shortcut_projections(model)
  body = [l for l in layers if l not in head and l.name not in shortcuts
          and not isinstance(l, keras.layers.Dropout)]  # Dropout is its input when predicting.
  coarser = [l for l in body if _side(l) < model.input.shape[1]]
  for candidates in ([l for l in coarser if _is_rectified(l)], coarser,
                     [l for l in body if _is_rectified(l)], body):
    if candidates:
      return candidates[-1].name
  return layers[-1].name


def _class_score_layers(model: keras.Model) -> set:
  """The layer that makes the logits and, when it has no weights of its own (a resize), the
  layers before it up to the one that does (a SegFormer's head conv at 1/4): scores, not
  features."""
  found = set()
  layer = logits_tensor(model)._keras_history.operation  # pylint: disable=protected-access
  while not isinstance(layer, keras.layers.InputLayer):
    found.add(layer)
    if layer.weights or not isinstance(getattr(layer, 'input', None), keras.KerasTensor):
      break
    layer = layer.input._keras_history.operation  # pylint: disable=protected-access
  return found


def logits_tensor(model: keras.Model):
  """The pre-softmax scores: the input of a final softmax/sigmoid layer, else the output."""
  last = model.layers[-1]
  if isinstance(last, (keras.layers.Activation, keras.layers.Softmax)):
    return last.input
  return model.outputs[0]


def _grad_model(model: keras.Model, layer_name: str) -> keras.Model:
  activations.check_layers(model, [layer_name])
  return keras.Model(model.input, [activations.layer_output(model, layer_name),
                                  logits_tensor(model)])


def _weighted_heatmaps(feature_maps: tf.Tensor, gradients: tf.Tensor) -> Heatmaps:
  """(B, h, w, K) maps and gradients -> (B, h, w) heatmaps in [0, 1], computed in float32."""
  feature_maps, gradients = tf.cast(feature_maps, tf.float32), tf.cast(gradients, tf.float32)
  weights = tf.reduce_mean(gradients, axis=[1, 2])  # (B, K)
  heatmaps = tf.nn.relu(tf.einsum('bhwk,bk->bhw', feature_maps, weights))
  peak = tf.reduce_max(heatmaps, axis=[1, 2], keepdims=True)
  return Heatmaps(tf.math.divide_no_nan(heatmaps, peak).numpy(), peak[:, 0, 0].numpy())


def gradcam(model: keras.Model, images: np.ndarray, layer_name: str | None = None,
            class_index=None) -> tuple[Heatmaps, np.ndarray]:
  """Classification Grad-CAM for a batch: (heatmaps (B, h, w), explained class per image).

  The class is each image's top prediction unless `class_index` (one int, or one per image)
  is given; a single sigmoid unit counts as two classes with scores (-logit, +logit).
  """
  grad_model = _grad_model(model, layer_name or default_layer(model, tasks.CLASSIFICATION))
  images = tf.convert_to_tensor(np.asarray(images, np.float32))
  with tf.GradientTape() as tape:
    feature_maps, logits = grad_model(images, training=False)
    logits = tasks.as_two_classes(tf.cast(logits, tf.float32), logits=True)
    if class_index is None:
      classes = tf.argmax(logits, axis=-1)
    else:
      classes = tf.broadcast_to(tf.cast(class_index, tf.int64), [tf.shape(logits)[0]])
    score = tf.reduce_sum(tf.gather(logits, classes, batch_dims=1))
  return _weighted_heatmaps(feature_maps, tape.gradient(score, feature_maps)), classes.numpy()


def top_classes(model: keras.Model, images: np.ndarray, count: int) -> np.ndarray:
  """(B, count) class indices by descending score (a sigmoid unit: two classes)."""
  logits = tasks.as_two_classes(tf.cast(keras.Model(model.input, logits_tensor(model))(
      np.asarray(images, np.float32), training=False), tf.float32), logits=True)
  return tf.math.top_k(logits, k=min(count, logits.shape[-1])).indices.numpy()


def seg_gradcam(model: keras.Model, images: np.ndarray, layer_name: str | None = None,
                classes=None, pixels='predicted', task: tasks.Task = tasks.SEGMENTATION
                ) -> Heatmaps:
  """Seg-Grad-CAM heatmaps (B, num_classes_explained, h, w) and their peaks (B, classes).

  `pixels`: 'predicted' (the pixels `task` predicts as the class), 'all', or a mask (B, H, W)
  of 0/1 selecting the pixels whose class logits are summed.
  """
  grad_model = _grad_model(model, layer_name or default_layer(model, tasks.SEGMENTATION))
  images = tf.convert_to_tensor(np.asarray(images, np.float32))
  with tf.GradientTape(persistent=True) as tape:
    feature_maps, logits = grad_model(images, training=False)
    logits = tf.cast(logits, tf.float32)  # (B, H, W, C)
    num_classes = logits.shape[-1]
    classes = list(range(num_classes)) if classes is None else list(classes)
    predicted = task.predicted_regions(logits)
    scores = []
    for c in classes:
      if isinstance(pixels, str) and pixels == 'predicted':
        region = predicted[..., c]
      elif isinstance(pixels, str) and pixels == 'all':
        region = tf.ones_like(logits[..., 0])
      else:
        region = tf.cast(tf.convert_to_tensor(pixels), tf.float32)
      scores.append(tf.reduce_sum(logits[..., c] * region))
  heatmaps = [_weighted_heatmaps(feature_maps, tape.gradient(s, feature_maps)) for s in scores]
  del tape
  return Heatmaps(np.stack([h.maps for h in heatmaps], axis=1),
                  np.stack([h.peaks for h in heatmaps], axis=1))


def resize_heatmaps(heatmaps: np.ndarray, height: int, width: int) -> np.ndarray:
  """(..., h, w) heatmaps to (..., height, width), bilinear, still in [0, 1]."""
  heatmaps = np.asarray(heatmaps, np.float32)
  flat = heatmaps.reshape((-1,) + heatmaps.shape[-2:])[..., None]
  resized = tf.image.resize(flat, (height, width), method='bilinear').numpy()[..., 0]
  return np.clip(resized, 0, 1).reshape(heatmaps.shape[:-2] + (height, width))


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
  """One jet-coloured heatmap (h, w) resized to the image (H, W, 3) and blended at alpha."""
  image = np.asarray(image)
  resized = resize_heatmaps(heatmap, image.shape[0], image.shape[1])
  return colormaps.heatmap_overlay(image, resized, alpha)


def overlays(images: np.ndarray, heatmaps: np.ndarray, alpha: float = 0.4) -> np.ndarray:
  """A batch of same-size images (B, H, W, 3) with their heatmaps (B, h, w) blended over."""
  return np.stack([overlay(i, h, alpha) for i, h in zip(images, heatmaps)])
