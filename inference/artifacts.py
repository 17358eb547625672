"""An exported file run in the runtime users deploy it with (TensorFlow for a SavedModel,
onnxruntime for .onnx, the LiteRT interpreter for .tflite), answering as a Predictor answers:
what --mode=export checks and what predict and score run with `predict.artifact`."""

import json
import os

from absl import logging
from ai_edge_litert.interpreter import Interpreter
import numpy as np
import onnxruntime
import tensorflow as tf

from errors import UserError, first_line
import tasks

ONNX_FILE = 'model.onnx'
LITERT_FILE = 'model.tflite'
RECORD = 'export.json'  # Beside every artefact: what it was exported from, and its check.
# What an export's folder holds: a SavedModel's parts, or one converted file, and RECORD.
EXPORT_ENTRIES = {RECORD, 'saved_model.pb', 'fingerprint.pb', 'variables', 'assets',
                  'assets.extra', ONNX_FILE, LITERT_FILE}
SIGNATURE = 'serve'  # The endpoint every format keeps: `pictures` -> masks, probabilities.


def _kind(path: str) -> tuple[str, str]:
  """(format, file to open) of an exported folder or file, or one line saying what it takes."""
  if os.path.isdir(path):
    recorded = _record(os.path.join(path, RECORD))
    if recorded.get('format') in _OPENERS and recorded.get('file'):
      file = os.path.normpath(os.path.join(path, recorded['file']))
      if os.path.exists(file):
        return recorded['format'], file
    for name, kind in (('saved_model.pb', 'saved_model'), (ONNX_FILE, 'onnx'),
                       (LITERT_FILE, 'litert')):
      if os.path.isfile(os.path.join(path, name)):
        return kind, path if kind == 'saved_model' else os.path.join(path, name)
  elif os.path.isfile(path) and path.endswith(('.onnx', '.tflite')):
    return ('onnx' if path.endswith('.onnx') else 'litert'), path
  raise UserError(f'predict.artifact={path!r} is not an exported model: give the folder '
                  '--mode=export wrote (WORKDIR/export/<format>), a .onnx or a .tflite file.')


class Artifact:
  """One exported model in its runtime. Pictures go in one at a time at their own size, as the
  type the file takes (uint8 photos; rasters as their set's sample type, or float32; the
  artefact resizes them); masks come back at that size."""

  def __init__(self, path: str):
    self.format, self.file = _kind(path)
    try:
      self._run, self.output_shapes, self.input_dtype = _OPENERS[self.format](self.file)
    except Exception as e:  # pylint: disable=broad-except  Each runtime raises its own kinds.
      raise UserError(f'predict.artifact={path!r} cannot be opened by its runtime '
                      f'({first_line(e)}); export it again with --mode=export.') from None
    folder = self.file if os.path.isdir(self.file) else os.path.dirname(self.file)
    self.record = _record(os.path.join(folder, RECORD))
    self.sizes = tuple(self.record.get('predict_sizes', ()))  # What it averages, baked in.
    self.flip = self.record.get('predict_flip', False)
    self.task = None  # The config's task as this file predicts (set by predictor.load).

  def outputs(self, pictures: np.ndarray) -> dict[str, np.ndarray]:
    """The artefact's outputs for a [N, H, W, C] batch of pictures of one size; a raster's
    missing values (NaN) go into an integer input as the nodata value it was trained with."""
    if (np.issubdtype(self.input_dtype, np.integer) and np.issubdtype(pictures.dtype, np.floating)
        and np.isnan(pictures).any()):
      nodata = self.record.get('pictures', {}).get('nodata')
      if nodata is None:
        raise UserError(f'predict.artifact={self.file} takes {np.dtype(self.input_dtype).name} '
                        'pictures and knows no nodata value, and a picture has missing pixels '
                        '(NaN, or its own nodata tag): train with data.nodata set, or export '
                        'with export.pictures_dtype=float32.')
      pictures = np.where(np.isnan(pictures), nodata, pictures)
    return self._run(np.ascontiguousarray(pictures, self.input_dtype))

  def masks(self, pictures: list[np.ndarray]) -> list[np.ndarray]:
    """Label masks (uint8) at each picture's own size, one picture at a time."""
    return [self.outputs(picture[None])['masks'][0] for picture in pictures]

  def masks_and_probabilities(self, pictures: list[np.ndarray]) -> list[tuple]:
    """(label mask, float32 probabilities [H, W, classes]) at each picture's own size: the
    file's own mask, and its probabilities brought to that size."""
    found = []
    for picture in pictures:
      answer = self.outputs(picture[None])
      found.append((answer['masks'][0], tf.image.resize(answer['probabilities'],
                                                        picture.shape[:2])[0].numpy()))
    return found

  def picture_probabilities(self, pictures: list[np.ndarray]) -> np.ndarray:
    """Classification: [N, classes] probabilities of whole pictures."""
    return np.concatenate([self.outputs(picture[None])['probabilities']
                           for picture in pictures])

  def check_fits(self, class_names, task: tasks.Task) -> None:
    """One line when the artefact is of another model than the config describes."""
    field = 'predict.artifact'
    if self.record.get('class_names', list(class_names)) != list(class_names):
      raise UserError(f'{field}={self.file} was exported for classes {self.record["class_names"]}'
                      f'; data.class_names is {list(class_names)}: use the config it was '
                      'trained with, or export this run again.')
    num_classes = self.output_shapes['probabilities'][-1]
    if not tasks.predicts_classes(num_classes, len(class_names)):
      raise UserError(f'{field}={self.file} predicts {num_classes} classes; '
                      f'data.class_names has {len(class_names)}: use the config it was trained '
                      'with, or export this run again.')
    if set(self.output_shapes) != set(task.outputs):
      raise UserError(f'{field}={self.file} answers {", ".join(sorted(self.output_shapes))}; '
                      f'task={task.name} answers {", ".join(sorted(task.outputs))}: use the '
                      'config it was trained with.')


def _record(path: str) -> dict:
  """export.json beside the file; {} when it was not copied along or cannot be read (the
  file's own output shape is checked all the same)."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as e:
    logging.warning('%s cannot be read (%s): the artefact is checked by its shapes alone.', path,
                    first_line(e))
    return {}


def _saved_model(path: str):
  loaded = tf.saved_model.load(path)  # Held by the closure: its variables live as long.
  function = getattr(loaded, SIGNATURE).concrete_functions[0]
  shapes = {name: tensor.shape.as_list() for name, tensor in function.structured_outputs.items()}
  dtype = function.structured_input_signature[0][0].dtype.as_numpy_dtype
  return (lambda pictures: {k: v.numpy() for k, v in getattr(loaded, SIGNATURE)(
      tf.constant(pictures)).items()}), shapes, dtype


def _onnx(path: str):
  session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
  names = [output.name for output in session.get_outputs()]
  shapes = {output.name: output.shape for output in session.get_outputs()}
  dtype = _ONNX_TYPES[session.get_inputs()[0].type]
  return (lambda pictures: dict(zip(names, session.run(None, {'pictures': pictures})))), \
      shapes, dtype


def _litert(path: str):
  runner = Interpreter(model_path=path).get_signature_runner(SIGNATURE)
  shapes = {name: detail['shape_signature'].tolist()
            for name, detail in runner.get_output_details().items()}
  dtype = runner.get_input_details()['pictures']['dtype']
  return (lambda pictures: runner(pictures=pictures)), shapes, dtype


_ONNX_TYPES = {'tensor(float)': np.float32, 'tensor(uint8)': np.uint8,
               'tensor(uint16)': np.uint16, 'tensor(int16)': np.int16}
_OPENERS = {'saved_model': _saved_model, 'onnx': _onnx, 'litert': _litert}
