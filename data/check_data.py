"""--mode=check_data: every split read once, and a table a person can act on (see data_report).

The files source is checked from the files themselves, without preparing anything; other
sources are prepared as training would prepare them, then counted.
"""

import numpy as np

from data import data_report
from data import files_source
from data import masks
from data import sources
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


def run(config, workdir: str) -> int:
  """Prints the table; returns the exit status: 2 when there is a problem, else 0."""
  data_config = config.data
  if data_config.source == 'files':
    _, report = files_source.check(data_config)
  else:
    report = prepared_report(sources.prepared_builder(data_config, workdir), data_config)
  print(f'data.source={data_config.source}: {len(report.class_names)} classes '
        f'({", ".join(report.class_names)})')
  print(report.format(data_config.files.mask_suffix))
  return 2 if report.has_problems() else 0

