"""Where examples come from: a prepared TFDS oxford_iiit_pet, an extracted folder, or synthetic.

Every source ends as a prepared TFDS builder with the official features, so the input
pipeline reads all three the same way.
"""

import contextlib
import hashlib
import os
import socket
import urllib.parse

from absl import logging
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.datasets.oxford_iiit_pet import oxford_iiit_pet_dataset_builder

from data import folder_checks
from data import oxford_pets_folder
from data import synthetic
from errors import DataError, is_write_failure

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


def _tfds_builder(data_config) -> tfds.core.DatasetBuilder:
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
    os.makedirs(os.path.join(data_dir, 'checked_lists'), exist_ok=True)
    list_files[split] = os.path.join(data_dir, 'checked_lists', list_name)
    with open(list_files[split], 'w') as f:
      f.writelines(kept)
  return list_files


def _folder_builder(folder: str, data_dir: str | None, workdir: str,
                    skip_bad_examples: bool = False) -> tfds.core.DatasetBuilder:
  """Prepares `folder` once into a TFDS data dir keyed by the folder's absolute path."""
  oxford_pets_folder.check_folder_layout(folder)
  folder = os.path.abspath(folder)
  if data_dir is None:
    key = hashlib.sha1(folder.encode()).hexdigest()[:12]
    data_dir = os.path.join(workdir, 'prepared_data', key)
  builder = oxford_pets_folder.OxfordIiitPetFolder(folder=folder, data_dir=data_dir)
  if not builder.is_prepared():
    builder = oxford_pets_folder.OxfordIiitPetFolder(
        folder=folder, data_dir=data_dir,
        list_files=_checked_list_files(folder, data_dir, skip_bad_examples))
    _prepare(builder, tfds.download.DownloadConfig(try_download_gcs=False))
  return builder


def _synthetic_builder(data_config, workdir: str) -> tfds.core.DatasetBuilder:
  spec = data_config.synthetic
  folder = spec.dir or os.path.join(workdir, 'synthetic_pets')
  with _write_failures_explained(f'Writing the synthetic data set into {folder}',
                                 'Free disk space or set --config.data.synthetic.dir to a '
                                 'writable folder.'):
    synthetic.write_synthetic_pets(folder, spec.num_trainval, spec.num_test, spec.photo_size)
  return _folder_builder(folder, None, workdir)


# data.source -> (how to get a prepared builder, default (train, eval) TFDS split strings).
SOURCES = {
    'tfds': (lambda data_config, workdir: _tfds_builder(data_config),
             ('train+test[:-1000]', 'test[-1000:]')),  # The book's last-1,000 hold-out.
    'folder': (lambda data_config, workdir: _folder_builder(
        data_config.folder, data_config.data_dir, workdir, data_config.skip_bad_examples),
               ('train', 'test')),  # trainval.txt / test.txt.
    'synthetic': (_synthetic_builder, ('train', 'test')),
}


def prepared_builder(data_config, workdir: str) -> tfds.core.DatasetBuilder:
  """A prepared builder for a checked config's `data.source`, or a DataError that says how to
  get the data."""
  return SOURCES[data_config.source][0](data_config, workdir)


def resolve_splits(data_config) -> tuple[str, str]:
  """(train split, eval split): the configured ones, or the source's defaults."""
  train_default, eval_default = SOURCES[data_config.source][1]
  return data_config.train_split or train_default, data_config.eval_split or eval_default


def first_eval_examples(builder: tfds.core.DatasetBuilder, data_config, count: int
                        ) -> tf.data.Dataset:
  """The first `count` examples of the eval split, still encoded: the fixed validation
  pictures that training shows and `--mode=explain` explains by default."""
  return read_encoded(builder, resolve_splits(data_config)[1]).take(count)


def num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
  try:
    return builder.info.splits[split].num_examples
  except (KeyError, ValueError) as e:
    raise DataError(f'Split {split!r} does not fit {builder.name} (splits: '
                    f'{", ".join(builder.info.splits.keys())}): {e}') from e


def read_encoded(builder: tfds.core.DatasetBuilder, split: str, shard: int = 0,
                 num_shards: int = 1) -> tf.data.Dataset:
  """Shard `shard` of `num_shards` disjoint slices of `split`, images and masks still encoded.

  Slicing by split string (not ds.shard) means each reader reads only its own examples,
  and together the shards hold every example once.
  """
  if num_shards > 1:
    split = tfds.even_splits(split, n=num_shards, drop_remainder=False)[shard]
  return builder.as_dataset(
      split=split, shuffle_files=False,
      read_config=tfds.ReadConfig(try_autocache=False),
      decoders={'image': tfds.decode.SkipDecoding(),
                'segmentation_mask': tfds.decode.SkipDecoding()})
