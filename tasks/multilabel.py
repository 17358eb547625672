"""Multi-label segmentation: every pixel holds a 0/1 label for each class, so classes may
overlap (a road under a tree, a cell in two stains). A sigmoid unit per class; each class is
its own binary problem in the loss, the metrics and the prediction (at its threshold).

Counts are each class's histogram of probabilities, apart for true 0 and 1 pixels, in
`BINS` bins: any threshold on a bin edge reads its counts off the same sums, which add up
exactly across replicas and workers, and `model.thresholds='tune'` picks each class's best."""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from errors import UserError
from tasks import losses
from tasks.base import IGNORE, Task

MULTILABEL_FEATURE = 'multilabel_mask'  # A prepared bitmask: bit k is class k.
BINS = 100  # Thresholds are multiples of 1 / BINS.
BITMASK_IGNORE = 2**16 - 1  # A prepared bitmask's ignored pixel: every bit set.
MAX_CLASSES = 15  # Bits of a 16-bit PNG, the top one kept for BITMASK_IGNORE.


def pack_bits(labels: np.ndarray) -> np.ndarray:
  """uint16 [H, W] bitmask of 0/1 labels [H, W, C] (a pixel IGNORE in any class: ignored)."""
  labels = np.asarray(labels)
  ignored = (labels == IGNORE).any(-1)
  weights = (1 << np.arange(labels.shape[-1])).astype(np.uint32)
  bits = ((labels == 1).astype(np.uint32) * weights).sum(-1)
  return np.where(ignored, BITMASK_IGNORE, bits).astype(np.uint16)


def unpack_bits(bits: tf.Tensor, num_classes: int) -> tf.Tensor:
  """uint8 [H, W, C] 0/1 labels (IGNORE where ignored) of a [H, W, 1] integer bitmask."""
  bits = tf.cast(bits, tf.int32)
  labels = tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, tf.range(num_classes)), 1)
  return tf.cast(tf.where(tf.equal(bits, BITMASK_IGNORE), IGNORE, labels), tf.uint8)


class Bitmask:
  """How a stored multi-label mask reads (data/decode.py): a 16-bit PNG bitmask to 0/1 labels."""
  dtype = np.uint16  # Of the stored PNG.

  def __init__(self, num_classes: int):
    self.num_classes = num_classes

  def decode(self, encoded: tf.Tensor) -> tf.Tensor:
    bits = tf.io.decode_png(encoded, channels=1, dtype=tf.uint16)
    labels = unpack_bits(bits, self.num_classes)
    labels.set_shape([None, None, self.num_classes])
    return labels


def threshold_bins(thresholds, num_classes: int) -> np.ndarray:
  """int [C]: the bin edge of each class's threshold (one number: the same for every class)."""
  values = np.broadcast_to(np.asarray(thresholds or 0.5, np.float64), [num_classes])
  return np.rint(values * BINS).astype(np.int64)


def _at_every_edge(counts: np.ndarray) -> tuple:
  """(true positive, false positive, false negative, true negative) per class [C, BINS + 1]
  at every threshold bin edge k (predicted 1 from bin k on): the counts summed from the top."""
  counts = np.asarray(counts, np.float64)
  from_top = np.concatenate([np.cumsum(counts[..., ::-1], -1)[..., ::-1],
                             np.zeros(counts.shape[:2] + (1,))], -1)  # [C, 2, BINS + 1]
  tp, fp = from_top[:, 1], from_top[:, 0]
  return tp, fp, from_top[:, 1, :1] - tp, from_top[:, 0, :1] - fp


def binary_counts(counts: np.ndarray, bins: np.ndarray) -> tuple:
  """(true positive, false positive, false negative, true negative) per class at `bins`."""
  rows = np.arange(len(counts))
  return tuple(values[rows, np.asarray(bins)] for values in _at_every_edge(counts))


def best_bins(counts: np.ndarray) -> np.ndarray:
  """Each class's threshold bin (1..BINS-1) of the highest IoU on `counts` (ties: nearest 0.5)."""
  tp, fp, fn, _ = (values[:, 1:BINS] for values in _at_every_edge(counts))
  ious = np.divide(tp, tp + fp + fn, out=np.zeros_like(tp), where=tp + fp + fn > 0)
  candidates = np.arange(1, BINS)
  closeness = -np.abs(candidates - BINS // 2)[None] * 1e-12
  return candidates[np.argmax(ious + closeness, axis=1)]


@dataclasses.dataclass(frozen=True)
class Multilabel(Task):
  thresholds: tuple = ()  # Per class (or one for all); (): 0.5.
  tune: bool = False  # Thresholds chosen at each evaluation for each class's best IoU.

  def settled(self, model_config) -> 'Multilabel':
    chosen = model_config.thresholds
    if chosen == 'tune':
      return dataclasses.replace(self, tune=True)
    values = (chosen,) if isinstance(chosen, (int, float)) else tuple(chosen)
    return dataclasses.replace(self, thresholds=tuple(float(v) for v in values))

  def with_thresholds(self, thresholds: tuple) -> 'Multilabel':
    """This task predicting at `thresholds` (tuned ones, read back), tuning no more."""
    return dataclasses.replace(self, thresholds=tuple(thresholds), tune=False)

  def predicting_as(self, results: dict, class_names: tuple) -> 'Multilabel':
    if not self.tune:
      return self
    keys = [f'threshold/{c}' for c in class_names]
    if not results or any(key not in results for key in keys):
      raise UserError("model.thresholds='tune': the workdir holds no thresholds tuned for "
                      f'{", ".join(class_names)} (best_model.json, written with the best model '
                      'at evaluation): train with evaluation first, or set model.thresholds '
                      'to numbers.')
    return self.with_thresholds(tuple(results[key] for key in keys))

  def record(self) -> dict:
    return {'thresholds': list(self.thresholds or (0.5,))}

  def from_record(self, record: dict) -> 'Multilabel':
    return self.with_thresholds(tuple(record['thresholds'])) if 'thresholds' in record else self

  def mask_channels(self, num_classes: int) -> int:
    return num_classes

  def stored_mask_reader(self, num_classes: int) -> Bitmask:
    return Bitmask(num_classes)

  def counts_shape(self, num_classes: int) -> tuple:
    return (num_classes, 2, BINS)

  def counts(self, labels, probabilities, num_classes: int, weights=None) -> tf.Tensor:
    probabilities = tf.cast(probabilities, tf.float32)
    bins = tf.minimum(tf.cast(probabilities * BINS, tf.int32), BINS - 1)
    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, IGNORE)
    truth = tf.where(valid, labels, 0)
    counted = tf.cast(valid, tf.float32)
    if weights is not None:
      counted *= tf.reshape(tf.cast(weights, tf.float32), [-1, 1, 1, 1])
    segment = (tf.range(num_classes) * 2 + truth) * BINS + bins
    sums = tf.math.unsorted_segment_sum(tf.reshape(counted, [-1]), tf.reshape(segment, [-1]),
                                        num_classes * 2 * BINS)
    return tf.reshape(sums, self.counts_shape(num_classes))

  def label_counts(self, labels, predicted, num_classes: int, weights=None) -> tf.Tensor:
    """Predicted 0/1 labels fall in the first and the last bin: any threshold reads them."""
    return self.counts(labels, tf.cast(predicted, tf.float32), num_classes, weights)

  def pixel_sums(self, counts) -> dict:
    """Labels, not pixels: a pixel counts once per class."""
    counts = np.asarray(counts)
    tp, fp, fn, tn = binary_counts(counts, threshold_bins(self.thresholds, len(counts)))
    return {'pixels': counts.sum(), 'correct': (tp + tn).sum(), 'intersection': tp,
            'union': tp + fp + fn}

  def summarize(self, loss_sum: float, num_examples: float, counts, class_names: tuple) -> dict:
    """Per class, as a binary problem at its threshold: IoU, Dice, precision and recall, and
    their means over the classes present; pixel accuracy over every class's labels. Tuning,
    each class's threshold and the mean IoU at 0.5 too."""
    counts = np.asarray(counts, np.float64)
    bins = best_bins(counts) if self.tune else threshold_bins(self.thresholds, len(counts))
    results = {'loss': loss_sum / max(num_examples, 1.0), 'num_examples': num_examples}
    results.update(_binary_metrics(counts, bins, class_names))
    if self.tune:
      results['mean_iou_at_0.5'] = _binary_metrics(
          counts, threshold_bins((), len(counts)), class_names)['mean_iou']
      results.update({f'threshold/{c}': b / BINS for c, b in zip(class_names, bins)})
    return results

  def per_example_loss(self, labels, probabilities, spec, class_weights=None) -> tf.Tensor:
    """Each class a binary problem: binary cross-entropy or focal per label (reading the
    sigmoid's logits where it can), averaged over the labels that count; region terms per
    class from soft counts. `class_weights` weigh each class's labels and scores."""
    probabilities = tf.cast(probabilities, tf.float32)
    labels = tf.cast(labels, tf.int32)
    num_classes = probabilities.shape[-1]
    weights = tf.ones([num_classes]) if class_weights is None else tf.constant(
        class_weights, tf.float32)
    valid = tf.not_equal(labels, IGNORE)
    truth = tf.cast(tf.where(valid, labels, 0), tf.float32)
    total = 0.0
    pixel_terms = [(n, w) for n, w in spec.terms if n in losses.PIXEL_TERMS]
    if pixel_terms:
      pixel_loss = sum(w * _binary_pixel_loss(n, truth, probabilities, spec)
                       for n, w in pixel_terms) * weights
      flat = lambda t: tf.reshape(t, [tf.shape(t)[0], tf.shape(t)[1], -1])
      total += losses.mean_over_pixels(flat(pixel_loss), flat(valid), spec.top_k_fraction)
    for name, weight in spec.terms:
      if name in losses.REGION_TERMS:
        total += weight * losses.region_term(name, truth, probabilities,
                                             tf.cast(valid, tf.float32), weights, spec)
    return total

  def uncertainty(self, probabilities) -> tf.Tensor:
    """The mean over classes of each label's binary entropy over log 2."""
    p = tf.clip_by_value(tf.cast(probabilities, tf.float32), 0.0, 1.0)
    entropy = -(tf.math.multiply_no_nan(tf.math.log(p), p)
                + tf.math.multiply_no_nan(tf.math.log(1.0 - p), 1.0 - p))
    return tf.reduce_mean(entropy, axis=-1) / tf.math.log(2.0)

  def predicted_regions(self, logits) -> tf.Tensor:
    return tf.cast(self.predicted_labels(tf.sigmoid(tf.cast(logits, tf.float32))), tf.float32)

  def class_region(self, mask, class_index: int):
    return mask[..., class_index] == 1

  def counted(self, mask):
    return (mask != IGNORE).all(-1)

  def predicted_labels(self, probabilities) -> tf.Tensor:
    """uint8 0/1 [..., C]: a class is predicted at or above its threshold."""
    edges = threshold_bins(self.thresholds, probabilities.shape[-1]) / BINS
    return tf.cast(tf.cast(probabilities, tf.float32) >= tf.constant(edges, tf.float32),
                   tf.uint8)


def _binary_pixel_loss(name: str, truth, probabilities, spec) -> tf.Tensor:
  """Per label: binary cross-entropy against the (smoothed) truth, or its focal form, each
  label's term times (1 - p_t)^gamma."""
  target = truth * (1.0 - spec.label_smoothing) + 0.5 * spec.label_smoothing
  cross_entropy = keras.ops.binary_crossentropy(target, probabilities)
  if name != 'focal':
    return cross_entropy
  p_true = truth * probabilities + (1.0 - truth) * (1.0 - probabilities)
  return (1.0 - p_true) ** spec.focal_gamma * cross_entropy


def _binary_metrics(counts: np.ndarray, bins: np.ndarray, class_names: tuple) -> dict:
  tp, fp, fn, tn = binary_counts(counts, bins)
  results = {'pixel_accuracy': (tp + tn).sum() / max((tp + fp + fn + tn).sum(), 1.0)}
  present = tp + fp + fn > 0
  for name, numerator, denominator in (('iou', tp, tp + fp + fn), ('dice', 2 * tp,
                                                                     2 * tp + fp + fn),
                                       ('precision', tp, tp + fp), ('recall', tp, tp + fn)):
    per_class = np.divide(numerator, denominator, out=np.zeros_like(tp), where=denominator > 0)
    results[f'mean_{name}'] = per_class[present].mean() if present.any() else 0.0
    results.update({f'{name}/{c}': per_class[i] for i, c in enumerate(class_names)})
  return results


MULTILABEL = Multilabel(
    name='multilabel', per_pixel=True, label_feature=MULTILABEL_FEATURE, headline='mean_iou',
    best_metrics=('loss', 'mean_iou', 'mean_dice', 'mean_precision', 'mean_recall',
                  'pixel_accuracy'),
    class_weights_field='train.class_weights', outputs=('masks', 'probabilities'),
    head_activation='sigmoid', max_classes=MAX_CLASSES, classes_overlap=True)
