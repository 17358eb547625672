"""The export table of BUILD.md: for a trained run and each format and quantization, the file's
size, its agreement with the Keras model (export's own check, on the run's validation pictures)
and latency on this CPU per batch of pictures at each model side, beside the Keras model. The
run's weights are rebuilt at each side (the book model and the U-Nets are fully convolutional).
One JSON line per (side, format, batch):

    python -m benchmarks.export --config=configs/seg.py --workdir=RUN \
        [--config.data.source=folder --config.data.folder=DIR] [--sides=128,512]
"""

import json
import os
import tempfile
import time

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np
import tensorflow as tf

config_flags.DEFINE_config_file('config', 'configs/seg.py', 'The run\'s config.')
flags.DEFINE_string('workdir', None, 'A trained run (its best model or checkpoint is exported).')
flags.DEFINE_list('sides', ['128', '512'], 'Model input sides to export and time at.')
flags.DEFINE_list('batches', ['1', '8'], 'Batch sizes to time.')
flags.DEFINE_integer('repeats', 10, 'Timed calls per batch (after 2 untimed).')
flags.mark_flags_as_required(['workdir'])
FLAGS = flags.FLAGS


def _seconds_per_call(run, pictures) -> float:
  for _ in range(2):
    run(pictures)
  started = time.perf_counter()
  for _ in range(FLAGS.repeats):
    run(pictures)
  return (time.perf_counter() - started) / FLAGS.repeats


def _row(side, name, batch, seconds, **fields) -> dict:
  return {'side': side, 'export': name, 'batch': batch,
          'ms_per_picture': round(1000 * seconds / batch, 2),
          'pictures_per_s': round(batch / seconds, 1), **fields}


def main(argv):
  del argv
  from inference import artifacts, export, export_check, loading  # pylint: disable=import-outside-toplevel
  from inference.predictor import Predictor  # pylint: disable=import-outside-toplevel
  import specs  # pylint: disable=import-outside-toplevel
  trained, _ = loading.load_model(specs.describe(FLAGS.config).network, FLAGS.workdir)
  rng = np.random.default_rng(0)
  for side in map(int, FLAGS.sides):
    config = FLAGS.config.copy_and_resolve_references()
    config.data.image_size, config.predict.sizes, config.predict.flip = side, (), False
    run = specs.describe(config)
    predictor = Predictor(trained, run)
    model = tf.function(lambda x, m=predictor.models[side]: m(x, training=False))
    calibration = export.calibration_pictures(run.data, FLAGS.workdir,
                                              config.export.calibration_pictures)
    for batch in map(int, FLAGS.batches):
      pictures = rng.integers(0, 256, (batch, side, side, 3), dtype=np.uint8)
      seconds = _seconds_per_call(lambda p: model(tf.cast(p, tf.float32)).numpy(), pictures)
      print(json.dumps(_row(side, 'keras', batch, seconds)), flush=True)
    for kind, quantizations in export.FORMATS.items():
      for quantize in quantizations:
        with tempfile.TemporaryDirectory() as folder:
          path = export.write(predictor, folder, kind=kind, quantize=quantize,
                              bands=run.data.bands, calibration=calibration)
          artifact = artifacts.Artifact(path)
          check = export_check.check(
              artifact, predictor, run.data, FLAGS.workdir,
              count=config.export.check_pictures,
              min_agreement=export.DEFAULT_MIN_AGREEMENT[quantize])
          name = kind if quantize == 'none' else f'{kind}-{quantize}'
          for batch in map(int, FLAGS.batches):
            pictures = rng.integers(0, 256, (batch, side, side, 3), dtype=np.uint8)
            seconds = _seconds_per_call(artifact.outputs, pictures)
            print(json.dumps(_row(
                side, name, batch, seconds, megabytes=round(
                    export_check.size_in_bytes(path) / 2**20, 2),
                agreement=check['agreement'],
                mean_class_agreement=check['mean_class_agreement'],
                model_score=check['model_score'], export_score=check['export_score'])),
                flush=True)


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  app.run(main)
