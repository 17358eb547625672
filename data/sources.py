"""Where examples come from: a prepared TFDS set (oxford_iiit_pet or any other by name), an
extracted Oxford folder, synthetic pets, or a user's own files.

Every source ends as a prepared TFDS builder whose examples hold `image` and
`segmentation_mask` (or a class label), so the input pipeline reads them all the same way;
`mask_lookup` says how each source's mask values become class ids.
"""

import contextlib
import hashlib
import os
import shutil
import socket
from typing import NamedTuple
import urllib.parse

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.datasets.oxford_iiit_pet import oxford_iiit_pet_dataset_builder

from data import files_source
from data import folder_checks
from data.decode import decode_mask
from data import masks
from data import oxford_pets_folder
from data import prepared_checks
from data import synthetic
from errors import DataError, is_write_failure
from tasks import MASK_FEATURE

DATASET_NAME = 'oxford_iiit_pet'
ARCHIVES = ('images.tar.gz', 'annotations.tar.gz')
NO_DATA_MESSAGE = """\
No copy of the Oxford-IIIT Pet dataset could be found{reason}.
Provide it in one of three ways:
  1. --config.data.data_dir=DIR   a TFDS data dir that already holds oxford_iiit_pet
                                  (prepared elsewhere with tfds.load('oxford_iiit_pet'));
  2. --config.data.manual_dir=DIR a folder holding the two official archives
                                  images.tar.gz and annotations.tar.gz;
  3. --config.data.source=folder --config.data.folder=DIR
                                  a folder in the official extracted layout (images/,
                                  annotations/trimaps/, annotations/trainval.txt, test.txt).
For a smoke run without the real data: --config.data.source=synthetic"""


def _download_host_reachable(timeout_s: float = 5.0) -> bool:
  """A quick look for the download server, so an offline node fails now, not after retries."""
  url = urllib.parse.urlparse(oxford_iiit_pet_dataset_builder._BASE_URL)  # pylint: disable=protected-access
  try:
    socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s).close()
    return True
  except OSError:
    return False


def _prepare(builder: tfds.core.DatasetBuilder, download_config) -> None:
  """Prepares once. TFDS writes into a temporary folder and renames it when complete, so a
  preparation that fails half-way is never taken for a prepared dataset."""
  if builder.is_prepared():
    return
  logging.info('Preparing %s into %s', builder.name, builder.data_dir)
  with _write_failures_explained(
      f'Preparing {builder.name} into {builder.data_dir}', 'Free disk space there or set '
      '--config.data.data_dir to a writable folder on a larger disk, then rerun; nothing '
      'half-written is used.'):
    builder.download_and_prepare(download_config=download_config)


@contextlib.contextmanager
def _write_failures_explained(what: str, fix: str):
  """A full disk or an unwritable folder while doing `what` becomes a DataError naming `fix`."""
  try:
    yield
  except (OSError, RuntimeError, tf.errors.OpError) as e:
    if not is_write_failure(e):
      raise
    raise DataError(f'{what} failed: {e}. {fix}') from None


def _other_tfds_builder(data_config) -> tfds.core.DatasetBuilder:
  """Any TFDS data set with a picture and a mask, by data.tfds_name; its features are read as
  `image` and `segmentation_mask` from data.image_key and data.mask_key."""
  name = data_config.tfds_name
  try:
    builder = tfds.builder(name, data_dir=data_config.data_dir)
  except Exception as e:  # pylint: disable=broad-except  TFDS raises several kinds.
    raise DataError(f'data.tfds_name={name!r}: TFDS has no such data set ({e}).') from None
  if not builder.is_prepared():
    if not data_config.download:
      raise DataError(f'data.tfds_name={name!r} is not prepared in {builder.data_dir_root} and '
                      'data.download=False: prepare it there (tfds.load on a connected '
                      'machine) or point data.data_dir at a copy.')
    try:
      _prepare(builder, tfds.download.DownloadConfig())
    except DataError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f'Preparing data.tfds_name={name!r} in {builder.data_dir_root} failed: '
                      f'{e}\nPrepare it on a connected machine and set data.data_dir.') from None
  features = builder.info.features
  for field in ('image_key', 'mask_key'):
    if data_config[field] not in features:
      raise DataError(f'data.{field}={data_config[field]!r} is not a feature of {name} '
                      f'(features: {", ".join(features.keys())}).')
  builder.example_keys = {'image': data_config.image_key,
                          'segmentation_mask': data_config.mask_key}
  return builder


def _tfds_builder(data_config) -> tfds.core.DatasetBuilder:
  if data_config.tfds_name != DATASET_NAME:
    return _other_tfds_builder(data_config)
  builder = tfds.builder(DATASET_NAME, data_dir=data_config.data_dir)
  if builder.is_prepared():
    return builder
  where = f' in {builder.data_dir_root}'
  if data_config.manual_dir:
    missing = [a for a in ARCHIVES
               if not os.path.isfile(os.path.join(data_config.manual_dir, a))]
    if missing:
      raise DataError(f'data.manual_dir={data_config.manual_dir!r} lacks {", ".join(missing)}: '
                      'it must hold both official archives, unrenamed and complete.')
    config = tfds.download.DownloadConfig(manual_dir=data_config.manual_dir,
                                          try_download_gcs=False)
    try:
      _prepare(builder, config)
    except DataError:
      raise
    except Exception as e:  # TFDS raises several types for a bad archive.
      raise DataError(f'Preparing {DATASET_NAME} from data.manual_dir='
                      f'{data_config.manual_dir!r} failed: {e}\nThe archives must be the '
                      'official, complete images.tar.gz and annotations.tar.gz.') from e
    return builder
  dataset_dir = os.path.join(builder.data_dir_root, DATASET_NAME)
  other_versions = sorted(v for v in (os.listdir(dataset_dir) if os.path.isdir(dataset_dir)
                                      else []) if v[0].isdigit() and v != str(builder.version))
  if other_versions:
    raise DataError(f'{dataset_dir} holds {DATASET_NAME} version {", ".join(other_versions)}, '
                    f'but TFDS {tfds.__version__} reads version {builder.version}. Prepare '
                    f'{builder.version} there with this TFDS (tfds.load(\'{DATASET_NAME}\', '
                    'data_dir=...) on a machine with internet, or --config.data.manual_dir with '
                    'the official archives), or point data.data_dir at a copy that has it.')
  if not data_config.download:
    raise DataError(NO_DATA_MESSAGE.format(reason=where + ' (data.download=False)'))
  if not _download_host_reachable():
    raise DataError(NO_DATA_MESSAGE.format(
        reason=where + ' and its download server cannot be reached from this machine'))
  try:
    _prepare(builder, tfds.download.DownloadConfig())
  except OSError as e:
    raise DataError(NO_DATA_MESSAGE.format(reason=f'{where}; downloading it failed: {e}')) from e
  return builder


def _checked_list_files(folder: str, data_dir: str, skip_bad_examples: bool) -> dict:
  """The split lists to prepare, after checking every example they name.

  Bad examples stop the run with a list of them, or with `skip_bad_examples` are left out of
  filtered copies of the lists (written under `data_dir`) and logged.
  """
  list_files = {}
  for split, list_name in oxford_pets_folder.SPLIT_LISTS.items():
    list_path = os.path.join(folder, 'annotations', list_name)
    lines = folder_checks.read_list(list_path)
    if not lines:
      raise DataError(f'annotations/{list_name} in data.folder={folder!r} names no example: '
                      f'the {split} split would be empty.')
    bad = folder_checks.bad_examples(folder, list_path)
    list_files[split] = list_path
    if not bad:
      continue
    shown = '\n'.join(f'  {line.split()[0]}: {problem}' for line, problem in bad[:10])
    more = f'\n  ... and {len(bad) - 10} more' if len(bad) > 10 else ''
    if not skip_bad_examples:
      raise DataError(f'{len(bad)} of {len(lines)} examples in annotations/{list_name} of '
                      f'{folder} cannot be used:\n{shown}{more}\nFix or remove them, or set '
                      '--config.data.skip_bad_examples=True to train without them.')
    logging.warning('Skipping %d of %d examples of annotations/%s (data.skip_bad_examples):\n%s%s',
                    len(bad), len(lines), list_name, shown, more)
    bad_lines = {line for line, _ in bad}
    kept = [line for line in lines if line not in bad_lines]
    if not kept:
      raise DataError(f'Every example of annotations/{list_name} in {folder} is unusable.')
    list_files[split] = _write_list(data_dir, list_name, kept)
  return list_files


def _write_list(data_dir: str, list_name: str, lines: list[str]) -> str:
  os.makedirs(os.path.join(data_dir, 'split_lists'), exist_ok=True)
  path = os.path.join(data_dir, 'split_lists', list_name)
  with open(path, 'w') as f:
    f.writelines(lines)
  return path


def validation_lines(lines: list[str], fraction: float) -> list[str]:
  """The validation part of trainval list lines: `fraction` of every breed (class id, the
  second column), at least one of each breed with two or more examples.

  Which examples of a breed go is fixed by a hash of their names, not by the list's order or
  a run's seed, so every run and every resumed run holds out the same pictures.
  """
  breeds = {}
  for line in lines:
    breeds.setdefault(line.split()[1], []).append(line)
  chosen = []
  for members in breeds.values():
    count = round(fraction * len(members))
    if len(members) >= 2:
      count = min(max(count, 1), len(members) - 1)
    members = sorted(members, key=lambda l: hashlib.sha1(l.split()[0].encode()).hexdigest())
    chosen.extend(members[:count])
  kept = set(chosen)
  return [line for line in lines if line in kept]


def _split_lists(folder: str, data_dir: str, skip_bad_examples: bool,
                 validation_fraction: float) -> dict:
  """Checked split lists, with `validation_fraction` of trainval held out as `validation`."""
  list_files = _checked_list_files(folder, data_dir, skip_bad_examples)
  if not validation_fraction:
    return list_files
  lines = folder_checks.read_list(list_files['train'])
  held_out = set(validation_lines(lines, validation_fraction))
  if not held_out:
    raise DataError(f'data.validation_fraction={validation_fraction} holds out no example of '
                    f'the {len(lines)} trainval examples: raise it, or set it to 0 to evaluate '
                    'on the test split.')
  return {'train': _write_list(data_dir, 'train.txt', [l for l in lines if l not in held_out]),
          'validation': _write_list(data_dir, 'validation.txt',
                                    [l for l in lines if l in held_out]),
          'test': list_files['test']}


def _folder_builder(folder: str, data_dir: str | None, workdir: str,
                    skip_bad_examples: bool = False, validation_fraction: float = 0.0
                    ) -> tfds.core.DatasetBuilder:
  """Prepares `folder` once into a TFDS data dir keyed by the folder's absolute path and the
  validation fraction, so that changing either prepares a new copy, never a stale one."""
  oxford_pets_folder.check_folder_layout(folder)
  folder = os.path.abspath(folder)
  key = hashlib.sha1(f'{folder}|{validation_fraction}'.encode()).hexdigest()[:12]
  data_dir = os.path.join(data_dir or os.path.join(workdir, 'prepared_data'), key)
  builder = oxford_pets_folder.OxfordIiitPetFolder(folder=folder, data_dir=data_dir)
  if not builder.is_prepared():
    builder = oxford_pets_folder.OxfordIiitPetFolder(
        folder=folder, data_dir=data_dir,
        list_files=_split_lists(folder, data_dir, skip_bad_examples, validation_fraction))
    _prepare(builder, tfds.download.DownloadConfig(try_download_gcs=False))
  return builder


def _synthetic_builder(data_config, workdir: str) -> tfds.core.DatasetBuilder:
  spec = data_config.synthetic
  folder = spec.dir or os.path.join(workdir, 'synthetic_pets')
  with _write_failures_explained(f'Writing the synthetic data set into {folder}',
                                 'Free disk space or set --config.data.synthetic.dir to a '
                                 'writable folder.'):
    synthetic.write_synthetic_pets(folder, spec.num_trainval, spec.num_test, spec.photo_size)
  return _folder_builder(folder, None, workdir,
                         validation_fraction=data_config.validation_fraction)


def _files_data_dir(data_config, workdir: str) -> str:
  return data_config.data_dir or os.path.join(workdir, 'prepared_data')


def _files_builder(data_config, workdir: str) -> tfds.core.DatasetBuilder:
  return files_source.prepared_builder(
      data_config, _files_data_dir(data_config, workdir),
      data_config.label_feature == MASK_FEATURE,
      lambda builder: _prepare(builder, tfds.download.DownloadConfig(try_download_gcs=False)))


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
    'tfds': (lambda data_config, workdir: _tfds_builder(data_config),
             Splits('train+test[:-1000]', 'test[-1000:]', 'test[-1000:]')),
    'folder': (lambda data_config, workdir: _folder_builder(
        data_config.folder, data_config.data_dir, workdir, data_config.skip_bad_examples,
        data_config.validation_fraction), Splits('train', 'validation', 'test')),
    'synthetic': (_synthetic_builder, Splits('train', 'validation', 'test')),
    'files': (_files_builder, Splits('train', 'validation', 'test')),
}
OXFORD_SOURCES = ('folder', 'synthetic')  # Plus tfds with data.tfds_name=oxford_iiit_pet.


def is_oxford(data_config) -> bool:
  """Oxford-IIIT Pet in any form: trimaps 1/2/3 and breeds in the file names."""
  return data_config.source in OXFORD_SOURCES or (
      data_config.source == 'tfds' and data_config.tfds_name == DATASET_NAME)


def mask_lookup(data_config):
  """uint8 [256] raw mask value -> class id (or masks.IGNORE) for what read_encoded returns;
  None for prepared class-id masks (data.source=files maps its masks when preparing)."""
  if data_config.source == 'files':
    return None
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
  return bool(data_config.files[f'{split}_images'])


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


def first_eval_examples(builder: tfds.core.DatasetBuilder, data_config, count: int
                        ) -> tf.data.Dataset:
  """The first `count` examples of the eval split, still encoded: the fixed validation
  pictures that training shows and `--mode=explain` explains by default."""
  return read_encoded(builder, resolve_splits(data_config).eval).take(count)


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
          data_config, _files_data_dir(data_config, workdir),
          data_config.label_feature == MASK_FEATURE)
    except DataError:  # The data's folders are not on this machine.
      return None
  report = files_source.stored_report(builder) if builder else None
  return report.class_colors if report else None


def with_class_names(config) -> None:
  """Fills an empty data.class_names of a files classification set with its class
  sub-folders' names (Keras' image_dataset_from_directory order)."""
  data = config.data
  if data.source == 'files' and not data.class_names and data.files.train_images and \
      data.label_feature != MASK_FEATURE:
    data.class_names = tuple(files_source.class_folders(data.files.train_images,
                                                        'data.files.train_images'))


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
  try:
    return builder.info.splits[split].num_examples
  except (KeyError, ValueError) as e:
    raise DataError(f'Split {split!r} does not fit {builder.name} (splits: '
                    f'{", ".join(builder.info.splits.keys())}): {e}') from e


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
