"""How each data.source becomes a prepared TFDS builder: oxford_iiit_pet (or any TFDS set by
name) from a TFDS data dir, the official archives or a download; an extracted Oxford folder;
the synthetic pets; a user's own files. Each prepares once and says how to get the data when
it cannot."""

import contextlib
import difflib
import hashlib
import os
import socket
import urllib.parse

from absl import logging
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.datasets.oxford_iiit_pet import oxford_iiit_pet_dataset_builder

from data import files_source
from data import folder_checks
from data import oxford_pets_folder
from data import synthetic
from errors import DataError, first_line, is_write_failure, write_failed

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
      f'{builder.name} into {builder.data_dir}', 'Free disk space there or set '
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
    raise write_failed(e, fix, what, DataError) from None


def _other_tfds_builder(data_config) -> tfds.core.DatasetBuilder:
  """Any TFDS data set with a picture and a mask, by data.tfds_name; its features are read as
  `image` and `segmentation_mask` from data.image_key and data.mask_key."""
  name = data_config.tfds_name
  try:
    builder = tfds.builder(name, data_dir=data_config.data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    nearest = difflib.get_close_matches(name.split(':')[0].split('/')[0],
                                        sorted(set(tfds.list_builders(
                                            with_community_datasets=False))), n=3)
    raise DataError(f'data.tfds_name={name!r}: TFDS {tfds.__version__} has no data set of that '
                    'name' + (f' (the nearest: {", ".join(nearest)})' if nearest else '')
                    + '. Names are those of tfds.list_builders(), with an optional :version; '
                    'pictures and masks of your own take data.source=files.') from None
  except Exception as e:  # pylint: disable=broad-except  TFDS raises several kinds.
    raise DataError(f'data.tfds_name={name!r}: TFDS cannot build it ({first_line(e)}).') from None
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
    if getattr(data_config, field) not in features:
      raise DataError(f'data.{field}={getattr(data_config, field)!r} is not a feature of {name} '
                      f'(features: {", ".join(features.keys())}).')
  builder.example_keys = {'image': data_config.image_key,
                          'segmentation_mask': data_config.mask_key}
  return builder


def tfds_builder(data_config) -> tfds.core.DatasetBuilder:
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
    if not bad:  # A list with a BOM, CRLF or blank lines is read by TFDS from a clean copy.
      with open(list_path, 'rb') as f:
        clean = f.read() == ''.join(lines).encode()
      list_files[split] = list_path if clean else _write_list(data_dir, list_name, lines)
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


def folder_builder(folder: str, data_dir: str | None, workdir: str,
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


def synthetic_builder(data_config, workdir: str) -> tfds.core.DatasetBuilder:
  spec = data_config.synthetic
  folder = spec.dir or os.path.join(workdir, 'synthetic_pets')
  with _write_failures_explained(f'the synthetic data set into {folder}',
                                 'Free disk space or set --config.data.synthetic.dir to a '
                                 'writable folder.'):
    synthetic.write_synthetic_pets(folder, spec.num_trainval, spec.num_test, spec.photo_size)
  return folder_builder(folder, None, workdir,
                         validation_fraction=data_config.validation_fraction)


def files_data_dir(data_config, workdir: str) -> str:
  return data_config.data_dir or os.path.join(workdir, 'prepared_data')


def files_builder(data_config, workdir: str) -> tfds.core.DatasetBuilder:
  return files_source.prepared_builder(
      data_config, files_data_dir(data_config, workdir),
      lambda builder: _prepare(builder, tfds.download.DownloadConfig(try_download_gcs=False)))
