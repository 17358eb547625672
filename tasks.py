"""The two tasks a config can name (`config.task`), and the one question every layer asks."""

SEGMENTATION = 'segmentation'
CLASSIFICATION = 'classification'
TASKS = (SEGMENTATION, CLASSIFICATION)
MASK_FEATURE = 'segmentation_mask'  # The label feature a segmenter learns: its class-id mask.
IGNORE = 255  # A mask pixel of no class: counted in neither the loss nor any metric.


def is_segmentation(config) -> bool:
  """Per-pixel labels (masks, IoU, Seg-Grad-CAM) rather than one label per picture."""
  return config.task == SEGMENTATION
