"""--mode=check_data: every split read once, and a table a person can act on (see data_report).

The files source is checked from the files themselves, without preparing anything; other
sources are prepared as training would prepare them, then counted.
"""

import numpy as np
import tensorflow as tf

from data import data_report
from data import files_source
from data import masks
from data import sources
from sizes import describe, sides
import tasks


def prepared_report(builder, data_config) -> data_report.DataReport:
  """Counts of a prepared source's splits: examples, class pixels (or pictures), ignored
  pixels, and mask values that map to no class."""
  per_pixel = tasks.of_data(data_config).per_pixel
  report = data_report.DataReport(data_config.class_names)
  lookup = sources.mask_lookup(data_config) if per_pixel else None
  ignore = data_config.ignore_index
  for name, split in zip(('train', 'validation', 'test'), sources.resolve_splits(data_config)):
    if split in report.splits or not sources.has_split(data_config, name):
      continue
    found = report.split(split)
    found.examples = sources.num_examples(builder, split)
    if not per_pixel:
      labels = np.fromiter(sources.read_encoded(builder, split).map(
          lambda example: example[data_config.label_feature]).as_numpy_iterator(), np.int64)
      found.class_pixels = np.bincount(labels, minlength=len(report.class_names)).astype(
          np.int64)
      continue
    values = sources.mask_value_counts(builder, split)
    classes = sources.counts_by_class(values, data_config)
    found.class_pixels = classes[:len(report.class_names)]
    found.ignore_pixels = int(classes[masks.IGNORE])
    table = np.arange(256) if lookup is None else lookup
    found.raw_values = set(np.flatnonzero(values).tolist())
    found.unmapped = {int(v): int(values[v]) for v in np.flatnonzero(
        (table == masks.IGNORE) & (values > 0)) if v != ignore and lookup is not None}
    if found.unmapped:
      found.problems['unmapped'] = [f'{split}: values {sorted(found.unmapped)[:10]}']
  default = masks.TRIMAP_LABEL_MAP if sources.is_oxford(data_config) else None
  report.finish(masks.encoding_from_config(data_config, default))
  return report


def squashed_ceiling(masks_at_size, size: tuple, task: tasks.Task, class_names: tuple) -> dict:
  """What a perfect predictor trained on pictures squashed to `size` (height, width) can
  score: every label mask (class ids [H, W], or 0/1 per class) taken down to `size` and back
  by nearest neighbour, as the squashed recipe's masks are, and scored against itself at its
  own size (IGNORE in the squashed mask reads as class 0: nothing predicts "ignored"). Classes
  the masks do not hold are left out."""
  counts = np.zeros(task.counts_shape(len(class_names)))
  held = np.zeros_like(counts)  # The masks against themselves: IoU 1 where a class is held.
  for mask in masks_at_size:
    planes = mask if mask.ndim == 3 else mask[..., None]
    squashed = tf.image.resize(planes, size, method='nearest')
    restored = tf.image.resize(squashed, planes.shape[:2], method='nearest').numpy()
    restored = np.where(restored == tasks.IGNORE, 0, restored).reshape(mask.shape)
    counts += task.label_counts(mask, restored, len(class_names)).numpy()
    held += task.label_counts(mask, np.where(mask == tasks.IGNORE, 0, mask),
                              len(class_names)).numpy()
  results = task.summarize(0.0, 1.0, counts, class_names)
  present = task.summarize(0.0, 1.0, held, class_names)
  return {'mean_iou': results['mean_iou'],
          **{name: results[f'iou/{name}'] for name in class_names
             if present[f'iou/{name}'] > 0}}


# A class whose ceiling is below this at data.image_size is named with the crop fields.
CEILING_ADVICE_BELOW = 0.9


def ceiling_lines(scanned: dict, data_config) -> list[str]:
  """The squashed ceiling of each split with masks (data.resize='square'), and the fields
  that lift it when a class loses much to the squashing."""
  if not tasks.of_data(data_config).per_pixel or data_config.resize != 'square':
    return []
  size = sides(data_config.image_size)
  task = tasks.of_data(data_config)
  lines, low = [], set()
  for split, items in scanned.items():
    found = [item.mapped.classes for item in items if item.mapped is not None]
    if not found:
      continue
    ceiling = squashed_ceiling(found, size, task, tuple(data_config.class_names))
    held = [name for name in data_config.class_names if name in ceiling]
    low |= {name for name in held if ceiling[name] < CEILING_ADVICE_BELOW}
    lines.append(f'ceiling {split}: a perfect model at data.image_size={describe(size)} scores '
                 f'mean IoU {ceiling["mean_iou"]:.4f} at the pictures\' own size ('
                 + ', '.join(f'{n} {ceiling[n]:.4f}' for n in held) + ')')
  if low:
    lines.append(f'NOTE: squashed to data.image_size={describe(size)}, even a perfect model '
                 f'scores below {CEILING_ADVICE_BELOW} IoU on {", ".join(sorted(low))}: train '
                 "on crops at the pictures' own resolution: data.resize='none' with "
                 'data.crop_size (and predict.window); BUILD.md "Large pictures".')
  return lines


def run(data_config, workdir: str) -> int:
  """Prints the table of the data section's data (for a files source also the squashed
  ceiling); returns the exit status: 2 when there is a problem, else 0."""
  ceiling = []
  if data_config.source == 'files':
    scanned, report = files_source.check(data_config)
    ceiling = ceiling_lines(scanned, data_config)
  else:
    report = prepared_report(sources.prepared_builder(data_config, workdir), data_config)
  print(f'data.source={data_config.source}: {len(report.class_names)} classes '
        f'({", ".join(report.class_names)})')
  print('\n'.join([report.format(data_config.files.mask_suffix)] + ceiling))
  return 2 if report.has_problems() else 0

