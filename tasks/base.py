"""What a kind of problem is (`Task`): the facts every layer reads from it instead of asking
which task a config names, and how a single sigmoid unit reads as two classes."""

import dataclasses

import tensorflow as tf

from errors import ConfigError

MASK_FEATURE = 'segmentation_mask'  # The label feature a segmenter learns: its class-id mask.
IGNORE = 255  # A mask pixel of no class: counted in neither the loss nor any metric.


@dataclasses.dataclass(frozen=True)
class Task:
  """One kind of problem. A new kind is one new module that makes one of these."""
  name: str
  # Labels are class-id masks padded with IGNORE: per-pixel metrics (IoU, Dice) and region
  # losses, Seg-Grad-CAM, mask previews and overlays, crops and sliding windows.
  per_pixel: bool
  label_feature: str | None  # The feature it learns; None: the config's data.label_feature.
  headline: str  # The metric a run is summed up by: score, the export check, per-group order.
  best_metrics: tuple  # What eval.best_metric may name: 'loss' (lowest) or a metric (highest).
  class_weights_field: str  # The one field that weights its classes in the loss.
  outputs: tuple  # What predict and every exported file answer.

  def learned_feature(self, configured: str) -> str:
    """The label feature this task learns, given data.label_feature; a ConfigError naming the
    fix when the two cannot go together."""
    if self.label_feature is not None:
      if configured not in ('', self.label_feature):
        raise ConfigError(f'task={self.name} learns data.label_feature={self.label_feature}, '
                          f'not {configured}: leave it at its default, or set the task that '
                          'learns one label per picture (task=classification).')
      return self.label_feature
    if configured in ('', MASK_FEATURE):
      raise ConfigError(f'task={self.name} learns one integer label per picture, not '
                        f'data.label_feature={configured or "(empty)"}: name a feature such as '
                        'species or label.')
    return configured

  def truth(self, mask, label):
    """What a picture's answer is compared with: its mask, or its label."""
    return mask if self.per_pixel else label


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
