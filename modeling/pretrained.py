"""A keras.applications network with ImageNet, random or file weights, one rule for every model
that starts from one: 'imagenet' (Keras downloads them), 'random', or the path of a weights file
(a .weights.h5 saved by Keras 3 from the same network, or Keras' own ImageNet .h5 file)."""

import os
import re
from typing import Callable

import keras

from errors import ConfigError, first_line


def weights_error(field: str, weights: str, problem: str, keras_file: str) -> ConfigError:
  return ConfigError(
      f'{field}={weights!r}: {problem}. Set --config.{field} to the path of a weights file for '
      f'this network (a .weights.h5 from save_weights, or Keras\' {keras_file} copied from a '
      "machine with internet; Keras looks for it in ~/.keras/models/), or to 'random' for "
      'untrained weights.')


def _mismatch(error: Exception) -> str:
  """Keras' load_weights error without its list of every layer object: the count and one
  example."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  total = re.match(r'A total of (\d+) objects could not be loaded', lines[0]) if lines else None
  if total and len(lines) > 1:
    return f'{total.group(1)} layers do not match, e.g. {lines[1][:160]}'
  return first_line(error)


def application(constructor: Callable[..., keras.Model], weights: str, field: str,
                keras_file: str, **kwargs) -> keras.Model:
  """`constructor(weights=..., **kwargs)` with `weights` as the config `field` names them; a
  download that fails offline, a missing file or one that does not fit is a ConfigError."""
  try:
    network = constructor(weights='imagenet' if weights == 'imagenet' else None, **kwargs)
  except Exception as e:  # Keras raises a bare Exception for a failed download.
    if weights != 'imagenet':
      raise
    raise weights_error(field, weights, f'Keras could not get the ImageNet weights ({e})',
                        keras_file) from None
  if weights in ('imagenet', 'random'):
    return network
  if not os.path.isfile(weights):
    raise weights_error(field, weights, 'no such file', keras_file)
  try:
    network.load_weights(weights)
  except (ValueError, OSError, KeyError) as e:
    raise weights_error(field, weights, f'it does not fit this network ({_mismatch(e)})',
                        keras_file) from None
  return network
