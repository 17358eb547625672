"""Where examples come from: the table of sources (each prepared by data/builders.py), their
splits, a damaged prepared set prepared again, and reading a prepared set's examples.

Every source ends as a prepared TFDS builder whose examples hold `image` and
`segmentation_mask` (or a class label), so the input pipeline reads them all the same way;
`mask_lookup` says how each source's mask values become class ids.
"""

import os
import shutil
from typing import NamedTuple

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from data import annotations
from data import builders
from data import files_pairing
from data import files_source
from data.decode import decode_mask
from data import masks
from data import prepared_checks
from errors import DataError
import tasks
from tasks import MASK_FEATURE


class Splits(NamedTuple):
  """TFDS split strings: what training reads, what evaluation and every choice (best model,
  predict sides) read, and what --mode=score reports on and nothing else reads."""
  train: str
  eval: str
  test: str


# data.source -> (how to get a prepared builder, default splits). tfds keeps the book's own
# hold-out (the last 1,000 test images validate; nothing else is held out, so score reads them
# too); folder and synthetic hold data.validation_fraction of trainval.txt out as `validation`.
SOURCES = {
    'tfds': (lambda data_config, workdir: builders.tfds_builder(data_config),
             Splits('train+test[:-1000]', 'test[-1000:]', 'test[-1000:]')),
    'folder': (lambda data_config, workdir: builders.folder_builder(
        data_config.folder, data_config.data_dir, workdir, data_config.skip_bad_examples,
        data_config.validation_fraction), Splits('train', 'validation', 'test')),
    'synthetic': (builders.synthetic_builder, Splits('train', 'validation', 'test')),
    'files': (builders.files_builder, Splits('train', 'validation', 'test')),
}
OXFORD_SOURCES = ('folder', 'synthetic')  # Plus tfds with data.tfds_name=oxford_iiit_pet.


def is_oxford(data_config) -> bool:
  """Oxford-IIIT Pet in any form: trimaps 1/2/3 and breeds in the file names."""
  return data_config.source in OXFORD_SOURCES or (
      data_config.source == 'tfds' and data_config.tfds_name == builders.DATASET_NAME)


def mask_lookup(data_config):
  """uint8 [256] raw mask value -> class id (or masks.IGNORE) for what read_encoded returns;
  for a prepared files set (which maps its masks when preparing) what its task stores: None
  for class-id masks."""
  if data_config.source == 'files':
    return tasks.of_data(data_config).stored_mask_reader(len(data_config.class_names))
  default = masks.TRIMAP_LABEL_MAP if is_oxford(data_config) else None
  return masks.lookup_table(masks.encoding_from_config(data_config, default))


def has_split(data_config, split: str) -> bool:
  """Whether the source holds `split`: tfds always; folder and synthetic a validation split
  only with a hold-out; files a split with its folder (validation: or a hold-out)."""
  if data_config.source == 'tfds':
    return True
  if split == 'validation' and data_config.validation_fraction:
    return True
  if data_config.source != 'files':
    return split != 'validation'
  return bool(getattr(data_config.files, f'{split}_images'))


def prepared_builder(data_config, workdir: str) -> tfds.core.DatasetBuilder:
  """A prepared builder for a checked config's `data.source`, or a DataError that says how to
  get the data. A damaged prepared set is prepared again when it came from local files (folder,
  synthetic, files), and named with the fix when it is a TFDS data dir."""
  make = SOURCES[data_config.source][0]
  for folder, problem in prepared_checks.damaged_info_files(
      _prepared_root(data_config, workdir)).items():
    _set_aside_damaged(data_config, os.path.dirname(folder), problem)
  builder = make(data_config, workdir)
  problem = prepared_checks.record_damage(builder)
  if problem:
    _set_aside_damaged(data_config, builder.data_dir, problem)
    builder = make(data_config, workdir)
  return builder


def _prepared_root(data_config, workdir: str) -> str:
  """The folder that holds the source's prepared sets (for tfds, this data set's own)."""
  if data_config.source == 'tfds':
    return os.path.join(data_config.data_dir or tfds.core.constants.DATA_DIR,
                        data_config.tfds_name)
  return data_config.data_dir or os.path.join(workdir, 'prepared_data')


def _set_aside_damaged(data_config, folder: str, problem: str) -> None:
  """Removes a damaged prepared set made from local files, so it is prepared again; a TFDS
  data dir is the user's: a DataError names it and the fix."""
  if data_config.source == 'tfds':
    raise DataError(f'The prepared data set in {folder} is damaged: {problem}. Delete {folder} '
                    'and rerun to prepare it again (data.manual_dir or a download), or point '
                    'data.data_dir at a good copy.')
  logging.warning('The prepared data set in %s is damaged: %s. Preparing it again from the '
                  'source files.', folder, problem)
  shutil.rmtree(folder)


def resolve_splits(data_config) -> Splits:
  """The configured splits, or the source's defaults (evaluation on the test split when a
  folder source holds nothing out: data.validation_fraction=0)."""
  defaults = SOURCES[data_config.source][1]
  if data_config.source == 'tfds' and not is_oxford(data_config):
    defaults = Splits('train', 'validation', 'test')
  elif data_config.source != 'tfds' and not has_split(data_config, 'validation'):
    defaults = defaults._replace(eval=defaults.test)
  return Splits(data_config.train_split or defaults.train,
                data_config.eval_split or defaults.eval,
                data_config.test_split or defaults.test)


def band_statistics(data_config, builder) -> tuple[list, list]:
  """(mean, std) per band that the model's first layer normalises by (files_source's rule, on
  the report written when the set was prepared), logged."""
  mean, std = files_source.band_statistics(data_config, files_source.stored_report(builder).bands)
  logging.info('Band statistics (mean / std per band%s): %s.',
               ', data.band_stats' if data_config.band_stats else ', the training split\'s',
               ', '.join(f'{m:.6g}/{s:.6g}' for m, s in zip(mean, std)))
  return mean, std


def raster_sample_type(data_config, builder) -> str:
  """The sample type of a prepared raster set's files ('uint16', ...), as check_data found it
  (one type a set: a mix is refused when the set is prepared)."""
  types = files_source.stored_report(builder).bands['dtypes']
  return max(types, key=types.get)


def first_examples(builder: tfds.core.DatasetBuilder, split: str, count: int) -> tf.data.Dataset:
  """The first `count` examples of `split`, still encoded: of the eval split, the fixed
  validation pictures that training shows and `--mode=explain` explains by default."""
  return read_encoded(builder, split).take(count)


def mask_value_counts(builder: tfds.core.DatasetBuilder, split: str) -> np.ndarray:
  """int64 [256]: how many pixels of `split`'s masks (at their own size) hold each value, as
  stored (before mask_lookup)."""
  return read_encoded(builder, split).map(
      lambda example: tf.math.bincount(tf.cast(tf.reshape(decode_mask(example[MASK_FEATURE]),
                                                          [-1]), tf.int32),
                                       minlength=256, maxlength=256, dtype=tf.int64),
      num_parallel_calls=tf.data.AUTOTUNE).reduce(tf.zeros([256], tf.int64), tf.add).numpy()


def class_pixel_counts(builder: tfds.core.DatasetBuilder, data_config, split: str
                       ) -> np.ndarray:
  """int64 [classes + 1]: every class's pixels in `split`'s masks at their own size, then the
  ignored pixels; from the preparation's report where the source keeps one."""
  if isinstance(builder, files_source.FilesDataset):
    report = files_source.stored_report(builder)
    if report is not None and split in report.splits:
      found = report.splits[split]
      return np.append(found.class_pixels, found.ignore_pixels)
  counts = counts_by_class(mask_value_counts(builder, split), data_config)
  return np.append(counts[:len(data_config.class_names)], counts[masks.IGNORE])


def counts_by_class(value_counts: np.ndarray, data_config) -> np.ndarray:
  """int64 [256]: `mask_value_counts` gathered by the class id (or masks.IGNORE) each stored
  value maps to."""
  lookup = mask_lookup(data_config)
  table = np.arange(256) if lookup is None else lookup.astype(np.int64)
  return np.bincount(table, weights=value_counts, minlength=256).astype(np.int64)


def own_class_colors(data_config, workdir: str, builder=None) -> list | None:
  """The data's own colour per class: data.mask_colors, or the "P" palette a files source's
  masks carry (from the report of `builder`, or of the set prepared under `workdir`, which
  this never prepares); None when the data has none or its prepared set is not here."""
  if data_config.mask_colors:
    return [list(c) for c in data_config.mask_colors]
  if data_config.source != 'files':
    return None
  if builder is None:
    try:
      builder = files_source.existing_builder(
          data_config, builders.files_data_dir(data_config, workdir))
    except DataError:  # The data's folders are not on this machine.
      return None
  report = files_source.stored_report(builder) if builder else None
  return report.class_colors if report else None


def class_names_of(data_config) -> tuple:
  """data.class_names, or for a files set that names none: a classification set's class
  sub-folders (Keras' image_dataset_from_directory order); annotations' labels (COCO's
  categories in id order, CVAT's labels as declared, LabelMe's sorted) after 'background',
  the class of what no shape covers."""
  files = data_config.files
  if data_config.source != 'files' or data_config.class_names or not files.train_images:
    return tuple(data_config.class_names)
  if not tasks.of_data(data_config).per_pixel:
    return tuple(files_pairing.class_folders(files.train_images, 'data.files.train_images'))
  if annotations.is_annotations(files.train_masks):
    labels = annotations.read_split(files.train_masks).labels
    return labels if tasks.of_data(data_config).classes_overlap else ('background',) + labels
  return tuple(data_config.class_names)


def breed(file_name: str) -> str:
  """The breed an official file name (`<Breed_name>_<number>.jpg`) names: the part before
  the last underscore."""
  return os.path.splitext(os.path.basename(file_name))[0].rsplit('_', 1)[0]


def num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
  if isinstance(builder, files_source.FilesDataset) and split.split('[')[0] not in \
      builder.info.splits:
    raise DataError(f'The files source has no {split!r} split: set data.files.{split}_images '
                    f'and data.files.{split}_masks (classification: data.files.{split}_images '
                    'alone) to score or evaluate on it.')
  splits = builder.info.splits
  try:
    count = splits[split].num_examples
  except (KeyError, ValueError) as e:
    raise DataError(f'Split {split!r} does not fit {builder.name} (splits: '
                    f'{", ".join(splits.keys())}): {e}') from e
  if not count:
    sizes = ', '.join(f'{name} {info.num_examples}' for name, info in splits.items())
    raise DataError(f'Split {split!r} of {builder.name} holds no examples (its splits: '
                    f'{sizes}): set data.train_split, data.eval_split or data.test_split to a '
                    "split or slice that holds some, e.g. 'train[:80%]'.")
  return count


def split_bytes(builder: tfds.core.DatasetBuilder, split: str) -> int:
  """What `split` (a slice: its share) takes as stored; 0 where the builder does not say."""
  try:
    whole = builder.info.splits[split.split('[')[0]]
    return int(whole.num_bytes * num_examples(builder, split) / max(whole.num_examples, 1))
  except (KeyError, ValueError, DataError):
    return 0


def shard_split(split: str, shard: int, num_shards: int):
  """Slice `shard` of `num_shards` disjoint, near-equal slices of `split` (a TFDS split that
  `read_encoded` and `num_examples` take): together they hold every example once."""
  return split if num_shards == 1 else tfds.even_splits(split, n=num_shards,
                                                       drop_remainder=False)[shard]


def read_encoded(builder: tfds.core.DatasetBuilder, split: str, shard: int = 0,
                 num_shards: int = 1) -> tf.data.Dataset:
  """Shard `shard` of `num_shards` disjoint slices of `split`, images and masks still encoded.

  Slicing by split (not ds.shard) means each reader reads only its own examples. A data set
  whose picture and mask features have other names (data.image_key, data.mask_key) is read
  under the names `image` and `segmentation_mask`.
  """
  keys = getattr(builder, 'example_keys', {})
  features = builder.info.features
  decoders = {keys.get(name, name): tfds.decode.SkipDecoding()
              for name in ('image', MASK_FEATURE) if keys.get(name, name) in features}
  ds = builder.as_dataset(split=shard_split(split, shard, num_shards), shuffle_files=False,
                          read_config=tfds.ReadConfig(try_autocache=False), decoders=decoders)
  if keys:
    ds = ds.map(lambda example: {**example, **{name: example[key] for name, key in keys.items()}})
  return ds
