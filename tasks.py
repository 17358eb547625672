"""The two tasks a config can name (`config.task`), the one question every layer asks, and how
a classifier's single sigmoid unit reads as two classes."""

import tensorflow as tf

SEGMENTATION = 'segmentation'
CLASSIFICATION = 'classification'
TASKS = (SEGMENTATION, CLASSIFICATION)
MASK_FEATURE = 'segmentation_mask'  # The label feature a segmenter learns: its class-id mask.
IGNORE = 255  # A mask pixel of no class: counted in neither the loss nor any metric.


def is_segmentation(config) -> bool:
  """Per-pixel labels (masks, IoU, Seg-Grad-CAM) rather than one label per picture."""
  return config.task == SEGMENTATION


def predicts_classes(units: int, num_classes: int) -> bool:
  """A model with `units` outputs predicts `num_classes` classes: one unit each, or a single
  sigmoid unit for two."""
  return units == num_classes or (units, num_classes) == (1, 2)


def as_two_classes(scores, logits: bool = False):
  """A single sigmoid unit's scores (..., 1) as two classes (..., 2): probabilities p become
  (1 - p, p), logits z become (-z, z); the scores of several classes are returned as they are."""
  if scores.shape[-1] != 1:
    return scores
  return tf.concat([-scores if logits else 1 - scores, scores], axis=-1)
