"""Tasks whose classes exclude each other (one class a pixel, or a picture): counted in a
confusion matrix, lost through a softmax (or one sigmoid unit for two classes), predicted by
the argmax."""

import dataclasses

import numpy as np
import tensorflow as tf

from tasks import losses
from tasks import metrics
from tasks.base import Task, as_two_classes


@dataclasses.dataclass(frozen=True)
class ExclusiveClasses(Task):

  def counts(self, labels, probabilities, num_classes: int, weights=None) -> tf.Tensor:
    return metrics.confusion_matrix(labels, probabilities, num_classes, weights)

  def label_counts(self, labels, predicted, num_classes: int, weights=None) -> tf.Tensor:
    return metrics.label_confusion_matrix(labels, predicted, num_classes, weights)

  def pixel_sums(self, counts) -> dict:
    counts = np.asarray(counts)
    hits = np.diag(counts)
    return {'pixels': counts.sum(), 'correct': hits.sum(), 'intersection': hits,
            'union': counts.sum(0) + counts.sum(1) - hits}

  def summarize(self, loss_sum: float, num_examples: float, counts, class_names: tuple) -> dict:
    return metrics.summarize(loss_sum, num_examples, counts, class_names, self.per_pixel)

  def per_example_loss(self, labels, probabilities, spec, class_weights=None) -> tf.Tensor:
    return losses.per_example_loss(labels, probabilities, spec, class_weights)

  def uncertainty(self, probabilities) -> tf.Tensor:
    """The entropy of the class probabilities over log(classes) (a sigmoid unit: two)."""
    probabilities = tf.cast(as_two_classes(probabilities), tf.float32)
    entropy = -tf.reduce_sum(tf.math.multiply_no_nan(tf.math.log(probabilities), probabilities),
                             axis=-1)
    return entropy / tf.math.log(float(probabilities.shape[-1]))

  def predicted_regions(self, logits) -> tf.Tensor:
    return tf.one_hot(tf.argmax(logits, axis=-1), logits.shape[-1], dtype=tf.float32)

  def predicted_labels(self, probabilities) -> tf.Tensor:
    return tf.cast(metrics.predicted_classes(probabilities), tf.uint8)
