"""Checks of a prepared TFDS data set's own files before anything reads them: an unreadable
dataset_info.json or a truncated or missing record file is named now, not as a protobuf
traceback at start-up or a DataLossError in the middle of an epoch."""

import glob
import json
import os

import tensorflow as tf
import tensorflow_datasets as tfds

import errors
from errors import DataError

# TFRecord framing per record: its length (8 bytes), the length's CRC and the data's CRC.
RECORD_FRAMING_BYTES = 16


def damaged_info_files(folder: str) -> dict:
  """{dataset_info.json path: what is wrong} for every prepared set below `folder`."""
  damaged = {}
  for path in glob.glob(os.path.join(glob.escape(folder), '**', 'dataset_info.json'),
                        recursive=True):
    try:
      with open(path, encoding='utf-8') as f:
        json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
      damaged[path] = f'{os.path.basename(path)} cannot be read ({e})'
  return damaged


def record_damage(builder: tfds.core.DatasetBuilder) -> str | None:
  """What is wrong with the prepared record files of `builder`, or None: each split's files
  must exist and hold exactly the bytes dataset_info.json records (its payload plus framing)."""
  if builder.info.file_format != tfds.core.FileFormat.TFRECORD:
    return None
  for name, split in builder.info.splits.items():
    payload = int(split.num_bytes)
    if not payload:
      continue  # Written by a TFDS that did not record sizes.
    size = 0
    for path in split.filepaths:
      if not tf.io.gfile.exists(path):
        return f'the {name} split\'s file {os.path.basename(path)} is missing'
      size += tf.io.gfile.stat(path).length
    expected = payload + RECORD_FRAMING_BYTES * split.num_examples
    if size != expected:
      return (f'the {name} split\'s record files hold {size} bytes where dataset_info.json '
              f'records {expected} (truncated or overwritten)')
  return None


def read_failure(error: Exception, data_config, data_dir: str, resume_from: str | None
                 ) -> DataError:
  """A DataLossError met while reading examples, as the damaged file and how to replace it."""
  detail = errors.first_line(error, 300, ('record', 'unable to read'))
  cached = data_config.cache not in ('auto', 'memory', 'none')
  cache_files = f'{data_config.cache}.*' if cached else None
  prepared = (f'the prepared set in {data_dir}: delete that folder and rerun (it is prepared '
              'again from the source files' + (', or from data.manual_dir or a download)'
                                               if data_config.source == 'tfds' else ')'))
  if cached and data_config.cache in str(error):
    fix = f'the data.cache files {cache_files}: delete them and rerun (they are written again)'
  elif cached:
    fix = f'the data.cache files {cache_files} (delete them) or {prepared}'
  else:
    fix = prepared
  return DataError(f'A data file is damaged ({detail}). It is {fix}; training resumes from '
                   f'{resume_from or "the start"}.')
