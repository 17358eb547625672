"""--mode=export: the model as predict serves it (uint8 pictures in, class-id masks out), as a
SavedModel, ONNX or LiteRT file that a server or a phone runs without this repository, then
checked against the model in that format's own runtime (inference/export_check.py)."""

import json
import os
import re
import shutil
import tempfile

from absl import logging
import keras
import numpy as np
import onnx
from onnxruntime import quantization
import tensorflow as tf
import tf2onnx

from data import decode
from data import sources
from data import spec as data_spec
from errors import ConfigError, UserError, first_line, is_write_failure, write_failed
from inference import artifacts
from inference import export_check
from inference import loading
from inference.predictor import Predictor, all_layers, label_masks, settled_task
from records import atomic
from records import workdir as workdir_lib
import specs

# Each format and the quantizations it takes (int8: weights and activations, calibrated;
# float16: weights stored in half precision).
FORMATS = {'saved_model': ('none',), 'onnx': ('none', 'int8'),
           'litert': ('none', 'float16', 'int8')}
# Layers a converter is known to get wrong, by format: the export stops before converting.
# tf2onnx 1.17 turns keras-hub's MiT attention into Reshapes that fail on onnxruntime, or (batch
# fixed to 1) that run and answer wrongly (0.57 off in probability, measured here).
UNSUPPORTED_LAYERS = {'onnx': ('SegFormerMultiheadAttention',)}
# What a raster export takes, as export.pictures_dtype names it: sample types a float32 holds
# exactly are taken as they are; any other type as float32.
RASTER_INPUT_TYPES = ('uint8', 'uint16', 'int16', 'float32')
# The least agreement with the Keras model's masks when export.min_agreement is 0.
DEFAULT_MIN_AGREEMENT = {'none': 0.99, 'float16': 0.99, 'int8': 0.95}


def check_settings(export_config) -> None:
  """One line for a format or quantization that does not exist, before the model is loaded."""
  if export_config.format not in FORMATS:
    raise ConfigError(f'export.format={export_config.format!r} is not one of '
                      f'{", ".join(FORMATS)}.')
  takes = FORMATS[export_config.format]
  if export_config.quantize not in takes:
    makes = [f for f, q in FORMATS.items() if export_config.quantize in q]
    raise ConfigError(f'export.quantize={export_config.quantize!r}: export.format='
                      f'{export_config.format} takes {", ".join(takes)}'
                      + (f'; {export_config.quantize} is made by export.format={makes[0]}.'
                         if makes else '.'))
  if export_config.pictures_dtype not in ('',) + RASTER_INPUT_TYPES:
    raise ConfigError(f'export.pictures_dtype={export_config.pictures_dtype!r}: one of '
                      f'{", ".join(RASTER_INPUT_TYPES)}, or \'\' for the training rasters\' own.')
  for field in ('calibration_pictures', 'check_pictures'):
    if getattr(export_config, field) < (1 if field == 'calibration_pictures' else 0):
      raise ConfigError(f'export.{field}={getattr(export_config, field)} must be a positive count'
                        + (' (0: no check).' if field == 'check_pictures' else '.'))
  if not 0.0 <= export_config.min_agreement <= 1.0:
    raise ConfigError(f'export.min_agreement={export_config.min_agreement} is a fraction of '
                      'pixels: in [0, 1] (0: 0.99 for float formats, 0.95 for int8).')


def pictures_spec(bands: int, dtype: str = 'uint8') -> tf.TensorSpec:
  """What an export takes: uint8 [N, H, W, 3] photos, or [N, H, W, bands] rasters in their
  own values and type (data.bands; `dtype`, see `pictures_type`; the model normalises them)."""
  return tf.TensorSpec([None, None, None, bands or 3], dtype, name='pictures')


def pictures_type(data: data_spec.Data, chosen: str, workdir: str) -> str:
  """The type of the pictures an export takes: uint8 photos; rasters of `chosen`
  (export.pictures_dtype), else of the training set's own sample type where a float32 holds it
  exactly (uint8, uint16, int16), else float32. A sensor's uint16 goes in as it is read."""
  if not data.bands:
    return 'uint8'
  chosen = chosen or sources.raster_sample_type(data, sources.prepared_builder(data, workdir))
  return chosen if chosen in RASTER_INPUT_TYPES else 'float32'


def serving_function(predictor: Predictor, bands: int = 0, dtype: str = 'uint8'):
  """`pictures_spec` pictures of any size -> class-id masks [N, H, W] (multi-label: 0/1
  [N, H, W, classes] at the task's thresholds) and the averaged probabilities at the model's
  side, or the picture's when it slides (classification: [N, classes]), as predict makes
  them: the outputs of the predictor's task. Traced without AutoGraph: its loops are over
  views and sizes known in Python, and AutoGraph, which cannot convert the Predictor's
  generators, ran them as written after about a second of each first export spent trying."""
  task = predictor.task
  @tf.function(input_signature=[pictures_spec(bands, dtype)], autograph=False)
  def serve(pictures):
    height, width = tf.shape(pictures)[1], tf.shape(pictures)[2]
    probabilities = predictor.probabilities(tf.cast(pictures, tf.float32), exportable=True)
    outputs = {'probabilities': probabilities}
    if 'masks' in task.outputs:
      outputs['masks'] = label_masks(probabilities, (height, width), task)
    return outputs
  return serve


def check_convertible(model: keras.Model, kind: str) -> None:
  """One line naming the layer a format cannot take, and the formats that take it."""
  for layer in all_layers(model):
    if type(layer).__name__ in UNSUPPORTED_LAYERS.get(kind, ()):
      works = [f for f in FORMATS if type(layer).__name__ not in UNSUPPORTED_LAYERS.get(f, ())]
      raise ConfigError(f'export.format={kind} cannot take layer {layer.name} '
                        f'({type(layer).__name__}): its converter gets it wrong. Use '
                        f'export.format={" or ".join(works)}.')


def _write_saved_model(predictor: Predictor, serve, folder: str) -> str:
  """The serving function (signature `serve`, and `serving_default` for TF Serving), and the
  networks' weights as the `variables`, `trainable_variables` and `non_trainable_variables`
  lists a loaded Keras export has, each weight stored once (tracking the Keras models stored
  each twice). tf.saved_model.save itself traces `serve` once: Keras' ExportArchive traced it
  for add_endpoint and the save traced it again (its context is part of tf.function's cache
  key)."""
  root = tf.__internal__.tracking.AutoTrackable()
  setattr(root, artifacts.SIGNATURE, serve)
  weights = list({id(weight): weight for model in predictor.models.values()
                  for weight in model.variables}.values())
  for name, chosen in (('variables', weights),
                       ('trainable_variables', [w for w in weights if w.trainable]),
                       ('non_trainable_variables', [w for w in weights if not w.trainable])):
    setattr(root, name, [weight.value for weight in chosen])
  tf.saved_model.save(root, folder, signatures={
      artifacts.SIGNATURE: serve, tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY: serve})
  return folder


def _write_onnx(serve, path: str) -> str:
  tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=17,
                                output_path=path)
  return path


class _Calibration(quantization.CalibrationDataReader):
  """onnxruntime's calibration reader over uint8 pictures."""

  def __init__(self, pictures: list[np.ndarray]):
    self._feeds = iter([{'pictures': picture[None]} for picture in pictures])

  def get_next(self):
    return next(self._feeds, None)


def _quantize_onnx(path: str, calibration: list[np.ndarray]) -> str:
  """onnxruntime's static quantization of the file in place: int8 weights (a scale per output
  channel), uint8 activations (QDQ), their ranges calibrated on `calibration`. The antialiased
  resize stays in float."""
  with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as folder:
    prepared = os.path.join(folder, 'prepared.onnx')
    quantization.shape_inference.quant_pre_process(path, prepared, skip_symbolic_shape=True)
    quantization.quantize_static(prepared, path, _Calibration(calibration),
                                 quant_format=quantization.QuantFormat.QDQ,
                                 activation_type=quantization.QuantType.QUInt8,
                                 weight_type=quantization.QuantType.QInt8,
                                 per_channel=True, nodes_to_exclude=resize_nodes(prepared))
  return path


def resize_nodes(path: str) -> list[str]:
  """The ONNX file's matrix products of two computed inputs (the antialiased resize's, whose
  weights follow the picture's size) and every node they are computed from. Left in float:
  quantized, the size arithmetic (Range, Div) was folded into constants of the calibration
  pictures' size, and onnxruntime failed on any other size."""
  graph = onnx.load(path).graph
  constants = {tensor.name for tensor in graph.initializer} | {
      node.output[0] for node in graph.node if node.op_type == 'Constant'}
  producer = {output: node for node in graph.node for output in node.output}
  found, waiting = {}, [node for node in graph.node if node.op_type in ('MatMul', 'Gemm')
                        and not any(name in constants for name in node.input[:2])]
  while waiting:
    node = waiting.pop()
    if node.name not in found:
      found[node.name] = node
      waiting.extend(producer[name] for name in node.input if name in producer)
  return list(found)


def _write_litert(saved_model: str, path: str, quantize: str, calibration,
                  network_names: tuple) -> str:
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, [artifacts.SIGNATURE])
  if quantize != 'none':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == 'float16':
    converter.target_spec.supported_types = [tf.float16]
  if quantize == 'int8':
    converter.representative_dataset = lambda: ({'pictures': p[None]} for p in calibration)
  with open(path, 'wb') as f:
    f.write(_network_in_int8(converter, network_names) if quantize == 'int8'
            else converter.convert())
  return path


def _network_in_int8(converter: tf.lite.TFLiteConverter, network_names: tuple) -> bytes:
  """The calibrated conversion with the networks' operations (those under the name scope of
  a model in `network_names`) in int8 and the serving function's own arithmetic in float: the
  exportable resize's computed weights and products, flips, averaging and the masks'
  upsampling, which the ONNX file keeps in float too. Quantized, the resize's weights lost
  most of their precision: seg_xception's file agreed with its model on 0.77 of the pixels,
  0.99 with them in float (BUILD.md "Export"). LiteRT's quantization debugger is its documented
  way to keep chosen operations in float."""
  debugger = tf.lite.experimental.QuantizationDebugger(converter=converter)
  in_network = re.compile('(^|;)(' + '|'.join(map(re.escape, network_names)) + r')(_\d+)?/')
  names = [tensor['name'] for tensor in tf.lite.Interpreter(
      model_content=debugger.calibrated_model).get_tensor_details()]
  debugger.options = tf.lite.experimental.QuantizationDebugOptions(
      denylisted_nodes=[name for name in names if not in_network.search(name)])
  return debugger.get_nondebug_quantized_model()


def calibration_pictures(data: data_spec.Data, workdir: str, count: int) -> list[np.ndarray]:
  """The first `count` (export.calibration_pictures) training pictures, uint8 at their own
  size (what the file will be given: its resize is calibrated too), read before anything is
  converted (a source that cannot be read fails here, in one line)."""
  builder = sources.prepared_builder(data, workdir)
  examples = sources.read_encoded(builder, sources.resolve_splits(data).train)
  return [decode.decode_picture(example['image'], data.bands).numpy()
          for example in examples.take(count)]


def write(predictor: Predictor, out_dir: str, *, kind: str, quantize: str, bands: int,
          calibration, dtype: str = 'uint8') -> str:
  """The artefact of `kind` (export.format) in `out_dir`, taking `dtype` pictures of `bands`
  bands (0: RGB photos): the SavedModel itself, or its conversion."""
  serve = serving_function(predictor, bands, dtype)
  if kind == 'saved_model':
    return _write_saved_model(predictor, serve, out_dir)
  if kind == 'onnx':
    path = _write_onnx(serve, os.path.join(out_dir, artifacts.ONNX_FILE))
    return _quantize_onnx(path, calibration) if quantize == 'int8' else path
  with tempfile.TemporaryDirectory(dir=out_dir) as saved_model:
    return _write_litert(_write_saved_model(predictor, serve, saved_model),
                         os.path.join(out_dir, artifacts.LITERT_FILE), quantize, calibration,
                         tuple(model.name for model in predictor.models.values()))


def _staging(out_dir: str, flag: str) -> str:
  """A new folder beside `out_dir` that the export is written into, so that `out_dir` holds
  one export whole: the earlier one until the new one is complete. A folder that holds
  anything but an earlier export is refused (its files are not this command's to replace)."""
  if os.path.isdir(out_dir):
    others = sorted(set(os.listdir(out_dir)) - artifacts.EXPORT_ENTRIES)
    if others:
      raise UserError(f'{flag}: {out_dir} holds files no export writes ({", ".join(others[:3])}'
                      f'{" ..." if len(others) > 3 else ""}): name an empty folder or an '
                      'earlier export\'s folder, which the export replaces whole.')
  parent = os.path.dirname(os.path.abspath(out_dir))
  workdir_lib.ensure_writable_dir(parent, flag)
  workdir_lib.ensure_writable_dir(out_dir, flag)
  return tempfile.mkdtemp(dir=parent, prefix=f'.{os.path.basename(out_dir)}.new-')


def _replace(staging: str, out_dir: str) -> None:
  """`staging` in the place of `out_dir`, whose earlier export is removed once it is."""
  old = staging + '.old'
  os.rename(out_dir, old)
  os.rename(staging, out_dir)
  shutil.rmtree(old)


def run(config, workdir: str, output: str | None) -> str:
  """The export in WORKDIR/export/<format>[-<quantize>]/ (or --output) with export.json, its
  check against the model; a UserError (exit 5) when the check fails, naming the classes."""
  run = specs.describe(config)
  check_settings(run.export)
  kind, quantize = run.export.format, run.export.quantize
  model, source = loading.load_model(run.network, workdir)
  predictor = Predictor(model, run, settled_task(run, workdir))
  check_convertible(next(iter(predictor.models.values())), kind)
  dtype = pictures_type(run.data, run.export.pictures_dtype, workdir)
  calibration = ([picture.astype(dtype) for picture in calibration_pictures(
      run.data, workdir, run.export.calibration_pictures)] if quantize == 'int8' else None)
  name = kind if quantize == 'none' else f'{kind}-{quantize}'
  out_dir = output or os.path.join(workdir, 'export', name)
  staging = _staging(out_dir, '--output' if output else '--workdir')
  try:
    path = write(predictor, staging, kind=kind, quantize=quantize, bands=run.data.bands,
                 calibration=calibration, dtype=dtype)
  except Exception as e:  # pylint: disable=broad-except  Converters raise many kinds.
    shutil.rmtree(staging, ignore_errors=True)
    if is_write_failure(e):
      raise write_failed(e, 'Free disk space or choose another --output.',
                         f'the {name} export to {out_dir}') from None
    raise UserError(f'export.format={kind} cannot convert {source}: {first_line(e)}. '
                    f'{export_check.OTHER_FORMATS}') from None
  record = {'format': kind, 'quantize': quantize, 'file': os.path.relpath(path, staging),
            'bytes': export_check.size_in_bytes(path), 'model': source,
            'class_names': list(run.data.class_names), 'image_size': run.data.image_size,
            'pictures': {'bands': run.data.bands or 3, 'dtype': dtype,
                         'nodata': run.data.nodata},
            'predict_mode': 'slide' if predictor.slides else 'resize',
            'predict_sizes': [size if isinstance(size, int) else list(size)
                              for size in predictor.sizes],
            'predict_scales': list(predictor.scales) if predictor.slides else [],
            'predict_windows_per_call': predictor.windows_per_call if predictor.slides else 0,
            'predict_flip': predictor.flip, **predictor.task.record()}
  minimum = run.export.min_agreement or DEFAULT_MIN_AGREEMENT[quantize]
  check = export_check.check(artifacts.Artifact(path), predictor, run.data, workdir,
                             count=run.export.check_pictures, min_agreement=minimum)
  record['check'] = check
  atomic.write_text(os.path.join(staging, artifacts.RECORD), json.dumps(record, indent=1) + '\n')
  _replace(staging, out_dir)
  logging.info('Exported %s as %s to %s.', source, name, os.path.join(out_dir, record['file']))
  print(export_check.table(check))
  if check and not check['passed']:
    raise export_check.Disagrees(check, name)
  return out_dir
