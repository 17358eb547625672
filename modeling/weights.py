"""`model.weights`: where a model's starting weights come from, one field for every family.

| value | what it loads |
| 'random' | nothing: the initializers' weights |
| 'imagenet' | keras.applications models only (xception, mobilenet_v2_unet): Keras' download |
| a keras-hub preset name | its folder in kagglehub's cache, else downloaded (online only) |
| a keras-hub preset folder | what `save_to_preset` or kagglehub writes |
| a `.keras` file, or the workdir of an earlier run | that model (a run: its best_model.keras) |
| a `.weights.h5` file | weights saved by `save_weights` from a model of the same structure |

Except for a `.weights.h5` file (which Keras matches by structure), weights are matched by layer
name and shape: a head of another class count is new, and so is anything else that does not fit.
Names Keras numbered itself (`conv2d_7`, `sequential_3`) are matched by their order instead, as
the numbers depend on what the process built before. One log line says what was restored.
"""

import collections
import difflib
import json
import os
import re
import socket

from absl import logging
import keras
import keras_hub
from keras_hub.src.utils import preset_utils
import numpy as np

from errors import ConfigError, first_line

RUN_BEST_MODEL = 'best_model.keras'  # What a run keeps of itself (records/checkpoints.py).
KAGGLE_HOST = 'api.kaggle.com'  # Where kagglehub downloads presets from.
RANDOM = 'random'
PRESET_WEIGHTS = 'model.weights.h5'  # A keras-hub preset folder's backbone weights.
IMAGENET = 'imagenet'  # keras.applications' own download (xception, mobilenet_v2_unet).
# keras-hub tasks whose head Keras named itself: that layer is the head (zoo.HEAD).
_TASK_HEADS = ('output_conv', 'output_segmentation_head')
HEAD = 'segmentation_output'  # The zoo's head (keras-hub's DeepLabV3 name for it).


def is_h5(weights: str) -> bool:
  return weights.endswith('.h5')


def is_application_file(weights: str) -> bool:
  """'imagenet' or Keras' own .h5 file of a keras.applications network (not a Keras 3
  `.weights.h5` from save_weights, which is matched against the whole model)."""
  return weights == IMAGENET or (is_h5(weights) and not weights.endswith('.weights.h5'))


def local_preset_folder(weights: str) -> str | None:
  """The keras-hub preset folder `weights` names, without any download: the folder itself, or
  a preset name's folder in kagglehub's cache; None for anything else."""
  if os.path.isdir(weights) and os.path.isfile(os.path.join(weights, 'config.json')) and \
      os.path.isfile(os.path.join(weights, 'metadata.json')):
    return weights
  handle = _kaggle_handle(weights)
  if handle:
    folder = _cached_folder(handle)
    if os.path.isfile(os.path.join(folder, 'config.json')):
      return folder
  return None


def _kaggle_handle(name: str) -> str | None:
  if os.sep in name or name in (RANDOM, IMAGENET):
    return None
  preset = preset_utils.BUILTIN_PRESETS.get(name)
  return preset['kaggle_handle'].removeprefix('kaggle://') if preset else None


def _cached_folder(handle: str) -> str:
  from kagglehub import cache, handle as handles  # pylint: disable=import-outside-toplevel
  return cache.get_cached_path(handles.parse_model_handle(handle))


def _reachable(host: str, timeout_s: float = 5.0) -> bool:
  try:
    socket.create_connection((host, 443), timeout=timeout_s).close()
  except OSError:
    return False
  return True


def check_source(weights: str) -> None:
  """Fails in seconds, with one line, for a `weights` that names no file, folder or keras-hub
  preset, or a preset that is neither cached nor downloadable (no network): before a run
  reads any data. What the source holds is checked when it is loaded."""
  if weights in (RANDOM, IMAGENET) or os.path.exists(weights):
    return
  handle = _kaggle_handle(weights)
  if handle is None:
    raise _not_a_source(weights)
  if local_preset_folder(weights) is None and not _reachable(KAGGLE_HOST):
    raise _offline(weights, handle)


def _not_a_source(weights: str) -> ConfigError:
  if os.sep in weights or '.' in weights:
    what = 'no such file or folder'
  else:
    nearest = difflib.get_close_matches(weights, preset_utils.BUILTIN_PRESETS, n=1, cutoff=0)
    what = f'not a keras-hub preset name (the nearest: {nearest[0]!r})' if nearest else \
        'not a keras-hub preset name'
  return ConfigError(f"model.weights={weights!r}: {what}. Use 'random', a keras-hub preset "
                     'name or folder, a .keras / .weights.h5 file, or the workdir of an earlier '
                     'run.')


def _offline(name: str, handle: str) -> ConfigError:
  return ConfigError(
      f'model.weights={name!r}: the keras-hub preset kaggle://{handle} is not in kagglehub\'s '
      f'cache ({_cached_folder(handle)}) and {KAGGLE_HOST} cannot be reached from here. On a '
      f'machine with internet run python -c "import kagglehub; '
      f"print(kagglehub.model_download('{handle}'))\", copy the folder it prints here and set "
      f'--config.model.weights=/path/to/that/folder.')


def _download_preset(name: str, handle: str) -> str:
  """A preset's folder downloaded by kagglehub; one line and no retries when offline."""
  if not _reachable(KAGGLE_HOST):
    raise _offline(name, handle)
  import kagglehub  # pylint: disable=import-outside-toplevel
  return kagglehub.model_download(handle)


def _preset_source(folder: str, label: str):
  """The model (a keras-hub task when the folder has one, else its backbone) and its head."""
  with open(os.path.join(folder, 'config.json')) as f:
    class_name = json.load(f).get('class_name', '?')
  backbone_class = getattr(keras_hub.models, class_name, None)
  if not (isinstance(backbone_class, type) and _is_image_backbone(backbone_class)):
    raise ConfigError(f'model.weights={label!r} is a preset of a {class_name}, not of an image '
                      'model: give an image backbone or segmenter preset (BUILD.md "Model '
                      "zoo\"), or 'random'.")
  if not os.path.isfile(os.path.join(folder, PRESET_WEIGHTS)):  # keras-hub would name a
    # model.weights.json it looks for in its place.
    raise ConfigError(f'model.weights={label!r}: the preset folder {folder} has no '
                      f'{PRESET_WEIGHTS} (its weights): copy the whole folder that '
                      'save_to_preset or kagglehub wrote.')
  try:
    task_file = os.path.join(folder, 'task.json')
    if os.path.isfile(task_file):
      with open(task_file) as f:
        task_class = getattr(keras_hub.models, json.load(f).get('class_name', ''))
      task = task_class.from_preset(folder)
      head = next((getattr(task, a) for a in _TASK_HEADS if hasattr(task, a)), None)
      return task, head
    return keras_hub.models.Backbone.from_preset(folder), None
  except Exception as e:  # pylint: disable=broad-except  keras-hub raises many kinds.
    raise ConfigError(f'model.weights={label!r}: the preset folder {folder} cannot be loaded '
                      f'({first_line(e)}).') from None


def _is_image_backbone(backbone_class) -> bool:
  image = ('FeaturePyramidBackbone', 'DeepLabV3Backbone', 'SegFormerBackbone')
  return any(issubclass(backbone_class, getattr(keras_hub.models, n)) for n in image)


def _source(weights: str):
  """(source model, its head layer or None) that `weights` names; a ConfigError when it cannot
  be had."""
  run_model = os.path.join(weights, RUN_BEST_MODEL)
  if os.path.isdir(weights) and os.path.isfile(run_model):
    weights_file = run_model
  elif os.path.isdir(weights):
    folder = local_preset_folder(weights)
    if not folder:
      raise ConfigError(f'model.weights={weights!r} is a folder with neither {RUN_BEST_MODEL} '
                        '(a run) nor config.json and metadata.json (a keras-hub preset).')
    return _preset_source(folder, weights)
  elif os.path.isfile(weights) and weights.endswith('.keras'):
    weights_file = weights
  else:
    handle = _kaggle_handle(weights)
    if handle is None:
      raise _not_a_source(weights)
    return _preset_source(local_preset_folder(weights) or _download_preset(weights, handle),
                          weights)
  try:
    return keras.models.load_model(weights_file, compile=False), None
  except Exception as e:  # pylint: disable=broad-except  Keras raises many kinds on a bad file.
    raise ConfigError(f'model.weights={weights!r}: {weights_file} cannot be read '
                      f'({first_line(e)}).') from None


def _snake(name: str) -> str:
  name = re.sub(r'(.)([A-Z][a-z]+)', r'\1_\2', name)
  return re.sub(r'([a-z])([A-Z])', r'\1_\2', name).lower()


def variable_keys(model: keras.Model, variables=None, head=None) -> dict:
  """Each of `variables` (default: the model's weights) by a key of its path that does not
  depend on what the process built before: a name Keras numbered itself (`conv2d_7`,
  `sequential_3`, `seed_generator_2`) loses its number, and a path met again gets `#2`,
  `#3`... in the model's order. Paths of named layers stay as they are. `head`: a layer whose
  weights are keyed as HEAD's (a keras-hub task's self-named head)."""
  auto = {'functional', 'sequential', 'seed_generator'} | {
      _snake(type(layer).__name__) for layer in model._flatten_layers()}  # pylint: disable=protected-access
  head_ids = {id(v) for v in head.weights} if head is not None else set()
  seen, keyed = collections.Counter(), {}
  for variable in model.weights if variables is None else variables:
    parts = variable.path.split('/')
    if id(variable) in head_ids:
      parts = [HEAD, parts[-1]]
    parts = [re.sub(r'_\d+$', '', p) if re.sub(r'_\d+$', '', p) in auto else p for p in parts]
    key = '/'.join(parts)
    seen[key] += 1
    keyed[key if seen[key] == 1 else f'{key}#{seen[key]}'] = variable
  return keyed


def carried_to_bands(kernel: np.ndarray, bands: int) -> np.ndarray:
  """An RGB stem's convolution kernel [..., 3, filters] carried to `bands` input bands, by
  segmentation_models.pytorch's rule (`patch_first_conv`): the RGB kernels repeated over the
  bands and scaled by 3 / bands; one band: their sum. A picture whose extra bands are 0 and
  whose RGB bands are scaled by bands / 3 gives the RGB model's answer."""
  if bands == 1:
    return kernel.sum(axis=-2, keepdims=True)
  repeated = np.take(kernel, np.arange(bands) % kernel.shape[-2], axis=-2)
  return repeated * (kernel.shape[-2] / bands)


def _is_rgb_stem(source_shape: tuple, target_shape: tuple) -> bool:
  """A convolution kernel that differs only in its input channels, from 3 (RGB)."""
  return (len(source_shape) == 4 and len(target_shape) == 4 and source_shape[-2] == 3
          and source_shape[-2] != target_shape[-2]
          and source_shape[:2] + source_shape[-1:] == target_shape[:2] + target_shape[-1:])


def transfer(source: keras.Model, target: keras.Model, head=None) -> tuple[int, list[str]]:
  """Copies every weight of `source` whose key and shape match one of `target`'s, and carries
  an RGB stem's kernel to the target's bands (`carried_to_bands`, logged); returns the count
  copied and the paths of the target's weights that stayed as they were."""
  found = variable_keys(source, head=head)
  restored, new = 0, []
  for key, variable in variable_keys(target).items():
    match = found.get(key)
    shape = tuple(variable.shape)
    if match is not None and tuple(match.shape) == shape:
      variable.assign(np.asarray(keras.ops.convert_to_numpy(match)).astype(variable.dtype))
      restored += 1
    elif match is not None and _is_rgb_stem(tuple(match.shape), shape):
      variable.assign(carried_to_bands(np.asarray(keras.ops.convert_to_numpy(match)),
                                       shape[-2]).astype(variable.dtype))
      logging.info('%s: the RGB kernels carried to %d bands (repeated, scaled by 3/%d%s).',
                   variable.path, shape[-2], shape[-2], '; one band: their sum'
                   if shape[-2] == 1 else '')
      restored += 1
    else:
      new.append(variable.path)
  return restored, new


def _load_h5(target: keras.Model, path: str) -> tuple[int, list[str]]:
  """Keras' structural load of a .weights.h5 that skips what does not fit; what it did not
  set is found by setting every weight to NaN first, and given its initial value back."""
  if not os.path.isfile(path):
    raise ConfigError(f'model.weights={path!r}: no such file.')
  initial = [v.numpy() for v in target.weights]
  floating = [np.issubdtype(value.dtype, np.floating) for value in initial]
  for variable, value, is_float in zip(target.weights, initial, floating):
    if is_float:
      variable.assign(np.full_like(value, np.nan))
  try:
    target.load_weights(path, skip_mismatch=True)
  except Exception as e:  # pylint: disable=broad-except  Keras raises many kinds on a bad file.
    for variable, value in zip(target.weights, initial):
      variable.assign(value)
    raise ConfigError(f'model.weights={path!r} cannot be read ({first_line(e)}).') from None
  restored, new = 0, []
  for variable, value, is_float in zip(target.weights, initial, floating):
    if is_float and np.isnan(variable.numpy()).all():
      variable.assign(value)
      new.append(variable.path)
    else:
      restored += 1
  return restored, new


def load_into(model: keras.Model, weights: str, source: keras.Model | None = None) -> str:
  """Sets `model`'s starting weights from `weights` (see the module's table), or from `source`,
  a network that already holds them; logs and returns one line of what was restored."""
  if weights == RANDOM:
    line = (f'model.weights={weights}: restored 0 of {len(model.weights)} weight tensors; '
            "the initializers' weights")
    logging.info('%s.', line)
    return line
  if source is not None:
    restored, new = transfer(source, model)
  elif is_h5(weights):
    restored, new = _load_h5(model, weights)
  else:
    source, head = _source(weights)
    restored, new = transfer(source, model, head)
  if not restored:
    raise ConfigError(f'model.weights={weights!r}: none of its weights fits {model.name} (no '
                      'layer of the same name and shape). Give weights of this model family '
                      "and backbone, or 'random'.")
  new_layers = list(dict.fromkeys(path.rsplit('/', 1)[0] for path in new))
  line = (f'model.weights={weights}: restored {restored} of {len(model.weights)} weight '
          f'tensors; new layers ({len(new_layers)}): '
          + (', '.join(new_layers[:8]) + (' ...' if len(new_layers) > 8 else '') or 'none'))
  logging.info('%s.', line)
  return line
