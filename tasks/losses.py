"""The training loss, per example in float32 (whatever the layers compute in): a weighted sum of
the terms `train.loss` names. Each term is computed per example over its pixels that count (not
IGNORE), so the sum over examples divided by the global batch is exact on any number of
replicas and with gradient accumulation.

Pixel terms (averaged over a picture's pixels, each weighted by its class's weight, optionally
over its hardest `top_k_percent_pixels` alone): cross_entropy, focal. Region terms (one score
per class from a picture's soft counts, averaged over classes with their weights; segmentation
only): dice, jaccard, tversky (one formula: Tversky's index with alpha/beta 0.5 is Dice, 1 is
Jaccard), lovasz (the Lovasz-softmax extension of the Jaccard loss, over the classes present).
"""

import difflib
from typing import NamedTuple

import keras
import tensorflow as tf

from errors import ConfigError
from tasks.base import IGNORE, Task

PIXEL_TERMS = ('cross_entropy', 'focal')
REGION_TERMS = ('dice', 'jaccard', 'tversky', 'lovasz')
TERMS = PIXEL_TERMS + REGION_TERMS
_SMOOTH = 1.0  # Added to a region score's numerator and denominator: an absent class scores 1.


class LossSpec(NamedTuple):
  """`train.loss` and its parameters, parsed once."""
  terms: tuple = (('cross_entropy', 1.0),)  # (name, weight) pairs.
  focal_gamma: float = 2.0
  tversky_alpha: float = 0.3  # Weight of false positives.
  tversky_beta: float = 0.7  # Weight of false negatives.
  top_k_fraction: float = 1.0  # OHEM: each picture's hardest fraction of pixels.
  label_smoothing: float = 0.0


def loss_spec(train_config, task: Task) -> LossSpec:
  """The parsed `train.loss` fields, or a ConfigError naming the field and its fix."""
  names = [name.strip() for name in train_config.loss.split('+')]
  for name in names:
    if name not in TERMS:
      nearest = difflib.get_close_matches(name, TERMS, n=1)
      raise ConfigError(f'train.loss={train_config.loss!r}: {name!r} is not a loss term'
                        + (f'; did you mean {nearest[0]!r}?' if nearest else '')
                        + f' Terms: {", ".join(TERMS)}, joined by +.')
    if name in REGION_TERMS and not task.per_pixel:
      raise ConfigError(f'train.loss: {name} is a per-pixel term; task={task.name} takes '
                        f'{" or ".join(PIXEL_TERMS)}.')
  if len(set(names)) != len(names):
    raise ConfigError(f'train.loss={train_config.loss!r} names a term twice; weigh it with '
                      'train.loss_weights instead.')
  weights = tuple(train_config.loss_weights) or (1.0,) * len(names)
  if len(weights) != len(names):
    raise ConfigError(f'train.loss_weights={tuple(train_config.loss_weights)} gives '
                      f'{len(weights)} weights for the {len(names)} terms of train.loss='
                      f'{train_config.loss!r}: give one per term, in order, or none.')
  if any(w < 0 for w in weights) or not any(weights):
    raise ConfigError('train.loss_weights must be 0 or more, and not all 0.')
  spec = LossSpec(tuple(zip(names, map(float, weights))), train_config.focal_gamma,
                  train_config.tversky_alpha, train_config.tversky_beta,
                  train_config.top_k_percent_pixels, train_config.label_smoothing)
  if spec.focal_gamma < 0 or min(spec.tversky_alpha, spec.tversky_beta) < 0 or not (
      spec.tversky_alpha + spec.tversky_beta):
    raise ConfigError('train.focal_gamma, train.tversky_alpha and train.tversky_beta must be 0 '
                      'or more (alpha and beta not both 0).')
  if not 0 < spec.top_k_fraction <= 1:
    raise ConfigError(f'train.top_k_percent_pixels={spec.top_k_fraction} is a fraction of '
                      "each picture's pixels: in (0, 1]; 1 keeps them all.")
  if not 0 <= spec.label_smoothing < 1:
    raise ConfigError(f'train.label_smoothing={spec.label_smoothing} must be in [0, 1).')
  return spec


def per_example_loss(labels: tf.Tensor, probabilities: tf.Tensor, spec: LossSpec = LossSpec(),
                     class_weights=None) -> tf.Tensor:
  """Each example's loss in float32: masks [N, H, W, 1] against [N, H, W, C] probabilities
  (`class_weights`: one per class, None: 1), or labels against [N, C] (or one sigmoid unit)."""
  probabilities = tf.cast(probabilities, tf.float32)
  if probabilities.shape.rank != 4:
    return _classification_loss(labels, probabilities, spec)
  labels = tf.squeeze(tf.cast(labels, tf.int32), axis=-1)
  valid = tf.not_equal(labels, IGNORE)
  labels = tf.where(valid, labels, 0)
  num_classes = probabilities.shape[-1]
  weights = tf.ones([num_classes]) if class_weights is None else tf.constant(
      class_weights, tf.float32)
  total = 0.0
  pixel_terms = [(n, w) for n, w in spec.terms if n in PIXEL_TERMS]
  if pixel_terms:
    pixel_loss = sum(w * _pixel_loss(n, labels, probabilities, spec) for n, w in pixel_terms)
    total += mean_over_pixels(pixel_loss * tf.gather(weights, labels), valid,
                               spec.top_k_fraction)
  for name, weight in spec.terms:
    if name in REGION_TERMS:
      total += weight * region_loss(name, labels, probabilities, valid, weights, spec)
  return total


def _pixel_loss(name: str, labels, probabilities, spec: LossSpec) -> tf.Tensor:
  """Per pixel: Keras' cross-entropy against the (smoothed) one-hot label, which reads the
  softmax's logits when it can (a saturated softmax still has a gradient), or Keras' focal loss,
  each class's term times (1 - p)^gamma (gamma 0: cross-entropy)."""
  target = tf.one_hot(labels, probabilities.shape[-1])
  if name == 'focal':
    return keras.losses.categorical_focal_crossentropy(
        target, probabilities, alpha=1.0, gamma=spec.focal_gamma,
        label_smoothing=spec.label_smoothing)
  return keras.losses.categorical_crossentropy(target, probabilities,
                                               label_smoothing=spec.label_smoothing)


def mean_over_pixels(pixel_loss: tf.Tensor, valid: tf.Tensor, top_k_fraction: float):
  """Per example, the mean over its valid pixels of `pixel_loss` (class-weighted), or over the
  ceil(fraction x valid) largest (OHEM, as Model Garden's top_k_percent_pixels, per picture)."""
  counted = tf.reduce_sum(tf.cast(valid, tf.float32), axis=[1, 2])
  flat = tf.reshape(tf.where(valid, pixel_loss, 0.0), [tf.shape(pixel_loss)[0], -1])
  if top_k_fraction >= 1.0:
    return tf.reduce_sum(flat, axis=1) / tf.maximum(counted, 1.0)
  kept = tf.math.ceil(top_k_fraction * counted)
  hardest = tf.sort(tf.where(tf.reshape(valid, tf.shape(flat)), flat, -1.0), direction='DESCENDING')
  ranks = tf.range(tf.shape(flat)[1], dtype=tf.float32)[None]
  return tf.reduce_sum(tf.where(ranks < kept[:, None], hardest, 0.0), axis=1) / tf.maximum(
      kept, 1.0)


def region_loss(name: str, labels, probabilities, valid, class_weights, spec: LossSpec):
  """Per example, 1 - the class-weighted mean over classes of a soft overlap score, from the
  probabilities over the valid pixels (Lovasz: its own extension over the classes present)."""
  truth = tf.one_hot(labels, probabilities.shape[-1], dtype=tf.float32)
  return region_term(name, truth, probabilities, tf.cast(valid, tf.float32)[..., None],
                     class_weights, spec)


def region_term(name: str, truth, probabilities, keep, class_weights, spec: LossSpec):
  """`region_loss` of float32 `truth` [N, H, W, C] (one-hot, or 0/1 per class) where `keep`
  (broadcast to it) is 1: one soft score per class, whether classes exclude each other or not."""
  truth, probabilities = truth * keep, probabilities * keep
  if name == 'lovasz':
    return lovasz_softmax(truth, probabilities, class_weights)
  alpha, beta = {'dice': (0.5, 0.5), 'jaccard': (1.0, 1.0)}.get(
      name, (spec.tversky_alpha, spec.tversky_beta))
  true_positive = tf.reduce_sum(truth * probabilities, axis=[1, 2])
  false_positive = tf.reduce_sum((1.0 - truth) * probabilities, axis=[1, 2])
  false_negative = tf.reduce_sum(truth * (1.0 - probabilities), axis=[1, 2])
  score = (true_positive + _SMOOTH) / (
      true_positive + alpha * false_positive + beta * false_negative + _SMOOTH)
  return 1.0 - tf.reduce_sum(score * class_weights, -1) / tf.reduce_sum(class_weights)


def lovasz_softmax(truth: tf.Tensor, probabilities: tf.Tensor, class_weights) -> tf.Tensor:
  """Per example, the Lovasz-softmax loss (Berman et al. 2018) averaged over the classes
  present: each class's pixel errors |truth - p| sorted, dotted with the gradient of the
  Jaccard loss along that order. Pixels not counted have zero error and zero truth."""
  num_classes = probabilities.shape[-1]
  batch = tf.shape(probabilities)[0]
  truth = tf.transpose(tf.reshape(truth, [batch, -1, num_classes]), [0, 2, 1])
  errors = tf.abs(truth - tf.transpose(tf.reshape(probabilities, [batch, -1, num_classes]),
                                       [0, 2, 1]))
  order = tf.argsort(errors, axis=-1, direction='DESCENDING')
  errors = tf.gather(errors, order, batch_dims=2)
  truth = tf.gather(truth, order, batch_dims=2)
  total = tf.reduce_sum(truth, axis=-1, keepdims=True)
  intersection = total - tf.cumsum(truth, axis=-1)
  union = total + tf.cumsum(1.0 - truth, axis=-1)
  jaccard = 1.0 - intersection / union
  gradient = tf.concat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], axis=-1)
  per_class = tf.reduce_sum(errors * gradient, axis=-1)
  present = tf.cast(total[..., 0] > 0, tf.float32) * class_weights
  return tf.reduce_sum(per_class * present, -1) / tf.maximum(tf.reduce_sum(present, -1), 1e-9)


def _classification_loss(labels, probabilities, spec: LossSpec) -> tf.Tensor:
  """Per example: softmax classes, or a single sigmoid unit with Keras' binary losses (which
  read the sigmoid's logits when they can)."""
  if probabilities.shape[-1] != 1:
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    return sum(w * _pixel_loss(n, labels, probabilities, spec) for n, w in spec.terms)
  truth = tf.cast(tf.reshape(labels, [-1, 1]), tf.float32)
  binary = {'cross_entropy': lambda: keras.losses.binary_crossentropy(
                truth, probabilities, label_smoothing=spec.label_smoothing),
            'focal': lambda: keras.losses.binary_focal_crossentropy(
                truth, probabilities, gamma=spec.focal_gamma,
                label_smoothing=spec.label_smoothing)}
  return sum(w * binary[n]() for n, w in spec.terms)
