"""The config at the door: a --config file that loads, every field one base.py defines, the
fields that follow from others filled in, every value checked once, then locked. Every command
(main.py, and the tests' config helper) settles its config here once; nothing downstream checks
it again or changes it."""

import difflib
import os
import traceback

import ml_collections

from configs import base
from data import sources
from errors import ConfigError
import tasks
from training import config_checks


def settle_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Fills data.label_feature from the task, an empty data.class_names of a files
  classification set from its sub-folders and the model's input bands from data.bands,
  checks every field, and locks the config."""
  check_known_fields(config)
  config_checks.check_task(config)
  config.data.label_feature = tasks.of(config).learned_feature(config.data.label_feature)
  config.data.class_names = sources.class_names_of(config.data)
  config.model.input_bands = config.data.bands
  config.model.input_nodata = config.data.nodata
  config_checks.check_config(config)
  config.lock()
  return config


def _field_names(config, prefix: str = '') -> list[str]:
  """Every dotted field of `config`, each section before its fields."""
  names = []
  for key, value in config.items():
    names.append(prefix + key)
    if isinstance(value, ml_collections.ConfigDict):
      names.extend(_field_names(value, f'{prefix}{key}.'))
  return names


def check_known_fields(config) -> None:
  """Every field is one configs/base.py defines, wherever it was set: a config file that
  misspells `train.learning_rate` would otherwise train with the default and no word."""
  known = _field_names(base.get_base_config())
  for field in _field_names(config):  # A section comes before its fields.
    if field in known:
      continue
    nearest = difflib.get_close_matches(field, list(known), n=1, cutoff=0.6)
    raise ConfigError(
        f'config field {field} is not defined in configs/base.py'
        + (f'; did you mean {nearest[0]}?' if nearest else '.')
        + ' Fix the config file (or add the field to configs/base.py if your code reads it).')


def check_config_file(path: str) -> None:
  """A --config file that exists, imports, and has get_config(); else one line naming the file,
  the line and the problem (before ml_collections would answer with a traceback)."""
  if not os.path.isfile(path):
    raise ConfigError(f'--config={path}: no such file. Name a config file such as '
                      'configs/seg.py.')
  try:
    with open(path, encoding='utf-8') as f:
      source = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise ConfigError(f'--config={path} cannot be read: {e}.') from None
  namespace = {'__file__': path, '__name__': 'segstream_config_check'}
  try:
    exec(compile(source, path, 'exec'), namespace)  # pylint: disable=exec-used
  except SyntaxError as e:
    raise ConfigError(f'--config={path}, line {e.lineno}: syntax error ({e.msg}).') from None
  except Exception as e:  # pylint: disable=broad-except  Whatever the file raises on import.
    line = next((frame.lineno for frame in reversed(traceback.extract_tb(e.__traceback__))
                 if os.path.abspath(frame.filename) == os.path.abspath(path)), '?')
    raise ConfigError(f'--config={path}, line {line}: importing it failed with '
                      f'{type(e).__name__}: {e}.') from None
  if not callable(namespace.get('get_config')):
    raise ConfigError(f'--config={path} has no get_config() function: a config file defines '
                      'get_config() returning an ml_collections.ConfigDict (see configs/seg.py).')
