"""Grad-CAM (book 9.4.3) for classifiers and Seg-Grad-CAM (Vinogradova et al., 2020).

Channel weights are the spatial mean of the score's gradient with respect to a conv layer's
feature map; the heatmap is the ReLU of the weighted channel sum, scaled to [0, 1]. For
segmentation the score of class c is the sum of its logits (pre-softmax) over a pixel set.
Scores and gradients are float32 whatever the model's compute dtype.
"""

import keras
import numpy as np
import tensorflow as tf

from interpretability import activations
from interpretability import colormaps

LOGITS_LAYER = 'logits'  # Models name their pre-softmax layer this (see modeling/).


def default_layer(model: keras.Model, segmentation: bool) -> str:
  """Classifier: the last conv layer. Segmenter: the last conv layer of the coarsest

  resolution (the bottleneck), where the features are most semantic; the final per-pixel
  layers would only echo the prediction.
  """
  convs = [model.get_layer(n) for n in activations.feature_layer_names(model)
           if n != LOGITS_LAYER and not isinstance(model.get_layer(n), (
               keras.layers.MaxPooling2D, keras.layers.AveragePooling2D))]
  if not segmentation:
    return convs[-1].name
  smallest = min(l.output.shape[1] for l in convs)
  return [l for l in convs if l.output.shape[1] == smallest][-1].name


def _logits(model: keras.Model):
  names = {layer.name for layer in model.layers}
  return model.get_layer(LOGITS_LAYER).output if LOGITS_LAYER in names else model.outputs[0]


def _grad_model(model: keras.Model, layer_name: str) -> keras.Model:
  activations.check_layers(model, [layer_name])
  return keras.Model(model.input, [model.get_layer(layer_name).output, _logits(model)])


def _weighted_heatmaps(feature_maps: tf.Tensor, gradients: tf.Tensor) -> np.ndarray:
  """(B, h, w, K) maps and gradients -> (B, h, w) heatmaps in [0, 1], computed in float32."""
  feature_maps, gradients = tf.cast(feature_maps, tf.float32), tf.cast(gradients, tf.float32)
  weights = tf.reduce_mean(gradients, axis=[1, 2])  # (B, K)
  heatmaps = tf.nn.relu(tf.einsum('bhwk,bk->bhw', feature_maps, weights))
  peak = tf.reduce_max(heatmaps, axis=[1, 2], keepdims=True)
  return tf.math.divide_no_nan(heatmaps, peak).numpy()


def gradcam(model: keras.Model, images: np.ndarray, layer_name: str | None = None,
            class_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Classification Grad-CAM for a batch: (heatmaps (B, h, w), explained class per image).

  The class is each image's top prediction unless `class_index` is given; a single sigmoid
  unit counts as two classes with scores (-logit, +logit).
  """
  grad_model = _grad_model(model, layer_name or default_layer(model, segmentation=False))
  images = tf.convert_to_tensor(np.asarray(images, np.float32))
  with tf.GradientTape() as tape:
    feature_maps, logits = grad_model(images, training=False)
    logits = tf.cast(logits, tf.float32)
    if logits.shape[-1] == 1:
      logits = tf.concat([-logits, logits], axis=-1)
    classes = (tf.argmax(logits, axis=-1) if class_index is None
               else tf.fill([tf.shape(logits)[0]], tf.cast(class_index, tf.int64)))
    score = tf.reduce_sum(tf.gather(logits, classes, batch_dims=1))
  return _weighted_heatmaps(feature_maps, tape.gradient(score, feature_maps)), classes.numpy()


def seg_gradcam(model: keras.Model, images: np.ndarray, layer_name: str | None = None,
                classes=None, pixels='predicted') -> np.ndarray:
  """Seg-Grad-CAM heatmaps (B, num_classes_explained, h, w).

  `pixels`: 'predicted' (the pixels predicted as the class), 'all', or a mask (B, H, W) of
  0/1 selecting the pixels whose class logits are summed.
  """
  grad_model = _grad_model(model, layer_name or default_layer(model, segmentation=True))
  images = tf.convert_to_tensor(np.asarray(images, np.float32))
  with tf.GradientTape(persistent=True) as tape:
    feature_maps, logits = grad_model(images, training=False)
    logits = tf.cast(logits, tf.float32)  # (B, H, W, C)
    num_classes = logits.shape[-1]
    classes = list(range(num_classes)) if classes is None else list(classes)
    predicted = tf.argmax(logits, axis=-1)
    scores = []
    for c in classes:
      if isinstance(pixels, str) and pixels == 'predicted':
        region = tf.cast(tf.equal(predicted, c), tf.float32)
      elif isinstance(pixels, str) and pixels == 'all':
        region = tf.ones_like(logits[..., 0])
      else:
        region = tf.cast(tf.convert_to_tensor(pixels), tf.float32)
      scores.append(tf.reduce_sum(logits[..., c] * region))
  heatmaps = [_weighted_heatmaps(feature_maps, tape.gradient(s, feature_maps)) for s in scores]
  del tape
  return np.stack(heatmaps, axis=1)


def resize_heatmaps(heatmaps: np.ndarray, height: int, width: int) -> np.ndarray:
  """(..., h, w) heatmaps to (..., height, width), bilinear, still in [0, 1]."""
  heatmaps = np.asarray(heatmaps, np.float32)
  flat = heatmaps.reshape((-1,) + heatmaps.shape[-2:])[..., None]
  resized = tf.image.resize(flat, (height, width), method='bilinear').numpy()[..., 0]
  return np.clip(resized, 0, 1).reshape(heatmaps.shape[:-2] + (height, width))


def overlays(images: np.ndarray, heatmaps: np.ndarray, alpha: float = 0.4) -> np.ndarray:
  """Jet-coloured heatmaps (B, h, w) resized to the images (B, H, W, 3) and blended at alpha."""
  images = np.asarray(images)
  resized = resize_heatmaps(heatmaps, images.shape[1], images.shape[2])
  return colormaps.heatmap_overlay(images, resized, alpha)
