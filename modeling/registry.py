"""Models by name, so a config picks one with `model.name`, built under a dtype policy."""

import contextlib
from typing import Callable, NamedTuple

import keras

from errors import ConfigError
from modeling import blocks
from modeling import weights as weights_lib
from sizes import describe, sides


class Family(NamedTuple):
  """Everything the product asks of a model family by its name: one record a family."""
  build: Callable[..., keras.Model]  # fn(image_size, num_classes, model_config).
  size_multiple: int = 1  # Its total stride: input sides must be a multiple of it.
  # fn(model) -> the layers of its (pretrained) encoder, which model.freeze_encoder_epochs
  # freezes and train.encoder_lr_multiplier slows; None: it has no encoder.
  encoder_layers: Callable[[keras.Model], list] | None = None
  # fn(model_config, image_size, field): a ConfigError for fields (or an input size, config
  # `field`) it cannot be built with.
  check: Callable | None = None
  # fn(model_config, image_size, num_classes, weights): the keras.applications network inside
  # it, built alone with `weights` ('imagenet' or Keras' own .h5 file) loaded: the source those
  # two kinds of model.weights are copied from.
  application: Callable[..., keras.Model] | None = None
  # model.weights can hold the whole network, head included, so predict, score, explain and
  # export may use it without a trained run.
  runs_without_checkpoint: bool = False
  # model fields that build the same code at a fraction of its weights and layers, for tests
  # that are not about its real size (and smoke runs).
  test_scale: dict = {}


_FAMILIES: dict[str, Family] = {}


def register(name: str, **record):
  """Decorator: makes a builder `fn(image_size, num_classes, model_config)` the family `name`,
  with the rest of its Family record."""
  def wrap(fn):
    _FAMILIES[name] = Family(fn, **record)
    return fn
  return wrap


def family(name: str) -> Family:
  return _FAMILIES[name]


def has_encoder(name: str) -> bool:
  return name in _FAMILIES and _FAMILIES[name].encoder_layers is not None


def encoder_layers(name: str, model: keras.Model) -> list:
  """The layers model.freeze_encoder_epochs freezes; none for a model without an encoder."""
  return _FAMILIES[name].encoder_layers(model) if has_encoder(name) else []


def runs_without_checkpoint(name: str) -> bool:
  return _FAMILIES[name].runs_without_checkpoint


def check_model(model_config, image_size: int, field: str = 'data.image_size') -> None:
  """A clear error for an unknown model, fields it cannot be built with or an input size
  (config `field`) it cannot take."""
  name = model_config.name
  if name not in _FAMILIES:
    raise ConfigError(f'Unknown model.name={name!r}; registered models: {", ".join(names())}.')
  record = _FAMILIES[name]
  if record.check:
    record.check(model_config, image_size, field)
  if model_config.weights == weights_lib.IMAGENET and not record.application:
    applications = sorted(n for n, f in _FAMILIES.items() if f.application)
    raise ConfigError(f"model.weights='imagenet' is Keras' download for "
                      f'{" and ".join(applications)}; model.name={name} starts from a '
                      'keras-hub preset name or folder (BUILD.md "Model zoo"), a file, a run, '
                      "or 'random'.")
  multiple = record.size_multiple
  for side in sides(image_size):
    if side % multiple:
      lower = side // multiple * multiple
      square = isinstance(image_size, int)
      raise ConfigError(f'model.name={name} takes {field} that is a multiple of {multiple} '
                        f'(its total stride): {describe(image_size)} is not; use '
                        + (f'{lower} or {lower + multiple}' if lower else f'{multiple}')
                        + ('.' if square else f' for its side {side}.'))


def names() -> list[str]:
  return sorted(_FAMILIES)


@contextlib.contextmanager
def _dtype_policy(policy: str):
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(policy)
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)


def build_model(model_config, image_size: int, num_classes: int,
                dtype_policy: str = 'float32', head: str | None = None) -> keras.Model:
  """Builds `model_config.name` (the architecture; `load_initial_weights` fills it); layers
  compute in `dtype_policy`, outputs stay float32. `head`: the activation of its float32
  `probabilities` layer when not the model's own (a sigmoid per class for multi-label masks)."""
  check_model(model_config, image_size)
  with _dtype_policy(dtype_policy):
    model = _FAMILIES[model_config.name].build(image_size=image_size, num_classes=num_classes,
                                               model_config=model_config)
  blocks.one_all_reduce_moments(model)
  output = model.get_layer('probabilities')
  if head is not None and head != output.get_config()['activation']:  # Called anew by every call of the model.
    output.activation = keras.activations.get(head)
  return model


def check_initial_weights(model_config) -> None:
  """What load_initial_weights will read exists, or can be downloaded (one line if not)."""
  weights_lib.check_source(model_config.weights)


def load_initial_weights(model: keras.Model, model_config) -> str:
  """Sets `model`'s starting weights from model.weights (modeling/weights.py) and returns the
  line it logged of what was restored. 'imagenet' and Keras' own .h5 file are loaded into the
  keras.applications network built alone, then copied by name like every other source."""
  weights = model_config.weights
  source = None
  application = _FAMILIES[model_config.name].application
  if application and weights_lib.is_application_file(weights):
    source = application(
        model_config=model_config, image_size=tuple(model.input_shape[1:3]),
        num_classes=model.output_shape[-1], weights=weights)
  return weights_lib.load_into(model, weights, source)
