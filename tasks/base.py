"""What a kind of problem is (`Task`): the facts every layer reads from it instead of asking
which task a config names, and what differs between kinds of problem as its methods (how
labels are counted against predictions, summed up, lost, and read off probabilities)."""

import dataclasses

import tensorflow as tf

from errors import ConfigError

MASK_FEATURE = 'segmentation_mask'  # The label feature a segmenter learns: its class-id mask.
IGNORE = 255  # A mask pixel of no class: counted in neither the loss nor any metric.


@dataclasses.dataclass(frozen=True)
class Task:
  """One kind of problem. A new kind is one new module that makes one of these (a subclass
  where its labels are counted, lost or predicted another way)."""
  name: str
  # Labels are masks padded with IGNORE: per-pixel metrics (IoU, Dice) and region losses,
  # Seg-Grad-CAM, mask previews and overlays, crops and sliding windows.
  per_pixel: bool
  label_feature: str | None  # The feature it learns; None: the config's data.label_feature.
  headline: str  # The metric a run is summed up by: score, the export check, per-group order.
  best_metrics: tuple  # What eval.best_metric may name: 'loss' (lowest) or a metric (highest).
  class_weights_field: str  # The one field that weights its classes in the loss.
  outputs: tuple  # What predict and every exported file answer.
  head_activation: str | None = None  # Of the model's float32 last layer; None: its own.
  max_classes: int = IGNORE  # Class ids 0..254 fit in a uint8 mask beside IGNORE.
  classes_overlap: bool = False  # A pixel may hold several classes: a 0/1 label each.

  def learned_feature(self, configured: str) -> str:
    """The label feature this task learns, given data.label_feature; a ConfigError naming the
    fix when the two cannot go together."""
    if self.label_feature is not None:
      if configured not in ('', MASK_FEATURE, self.label_feature):
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

  def mask_channels(self, num_classes: int) -> int:
    """Channels of a label mask: one class id a pixel."""
    del num_classes
    return 1

  def stored_mask_reader(self, num_classes: int):
    """How a prepared mask reads (data/decode.py's decode_mask): None, as class ids."""
    del num_classes

  def counts_shape(self, num_classes: int) -> tuple:
    """The shape of `counts`: a confusion matrix, rows true classes, columns predicted."""
    return (num_classes, num_classes)

  def counts(self, labels, probabilities, num_classes: int, weights=None) -> tf.Tensor:
    """Float32 sums (`counts_shape`) of labels against predictions that add up exactly across
    replicas, batches and workers; `weights` (one per example) count padding out."""
    raise NotImplementedError

  def label_counts(self, labels, predicted, num_classes: int, weights=None) -> tf.Tensor:
    """`counts` of predicted labels (`predicted_labels`' answer) of labels' shape: what
    --mode=score and the export check compare at the pictures' own size."""
    raise NotImplementedError

  def pixel_sums(self, counts) -> dict:
    """Pixel counts of summed `counts` that add up over pictures to a split's: 'pixels'
    and 'correct' labels, and each class's 'intersection' and 'union' (arrays)."""
    raise NotImplementedError

  def summarize(self, loss_sum: float, num_examples: float, counts, class_names: tuple) -> dict:
    """The metrics of summed `counts` (loss, accuracy, per class and means)."""
    raise NotImplementedError

  def per_example_loss(self, labels, probabilities, spec, class_weights=None) -> tf.Tensor:
    """Each example's loss in float32 (tasks/losses.py's terms, `spec` a LossSpec)."""
    raise NotImplementedError

  def predicted_labels(self, probabilities) -> tf.Tensor:
    """uint8 labels of probabilities [..., classes]: masks [N, H, W] of class ids (or of 0/1
    per class, [N, H, W, classes]), or one class id per picture."""
    raise NotImplementedError

  def predicting_as(self, results: dict, class_names: tuple) -> 'Task':
    """This task predicting as the evaluation that gave `results` chose (tuned thresholds)."""
    del results, class_names
    return self

  def uncertainty(self, probabilities) -> tf.Tensor:
    """float32 [...] in [0, 1] of probabilities [..., classes]: how unsure the answer is, 0
    certain, 1 as unsure as can be (the entropy over the largest it can be)."""
    raise NotImplementedError

  def predicted_regions(self, logits) -> tf.Tensor:
    """float32 0/1 [N, H, W, classes]: where each class is predicted, from the logits (what
    Seg-Grad-CAM sums a class's scores over)."""
    raise NotImplementedError

  def class_region(self, mask, class_index: int):
    """bool [H, W]: where a label mask ([H, W] ids, or 0/1 per class) holds the class."""
    return mask == class_index

  def counted(self, mask):
    """bool [H, W]: the pixels of a label mask that count (not ignored)."""
    return mask != IGNORE

  def record(self) -> dict:
    """What an export's export.json (and score.json) say of how this task predicts."""
    return {}

  def from_record(self, record: dict) -> 'Task':
    """This task predicting as an export's `record` (export.json) says it does."""
    del record
    return self

  def settled(self, model_config) -> 'Task':
    """This task with what the model section decides of it (multi-label thresholds)."""
    del model_config
    return self


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
