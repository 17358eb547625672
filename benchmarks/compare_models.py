"""Trains segmentation configs with the same budget and scores them (one JSON line each).

Same data (a folder in the official layout: trained on trainval.txt, scored on test.txt),
image size, batch and number of steps for every config; metrics at model resolution from the
trainer's evaluation and at each picture's own resolution (masks resized back).

    python -m benchmarks.compare_models --folder=../shared/oxford_pets_sample \
        --configs=configs/seg.py,configs/seg_xception.py --image_size=128 --batch=8 --steps=600
"""

import importlib.util
import json
import os
import tempfile
import time

from absl import app
from absl import flags

from data import sources
from inference import loading
from inference import predictor
from inference import score
import specs
from training import loop

flags.DEFINE_string('folder', '../shared/oxford_pets_sample', 'Official extracted layout.')
flags.DEFINE_list('configs', ['configs/seg.py', 'configs/seg_xception.py'], 'Config files.')
flags.DEFINE_integer('image_size', 128, 'Input side for every config.')
flags.DEFINE_integer('batch', 8, 'Global batch for every config.')
flags.DEFINE_integer('steps', 600, 'Training steps for every config.')
flags.DEFINE_integer('cpu_devices', 2, 'Logical CPU devices (replicas).')
flags.DEFINE_string('workdir', None, 'Where runs go (default: a temporary folder).')
FLAGS = flags.FLAGS


def load_config(path: str):
  spec = importlib.util.spec_from_file_location('experiment', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def main(argv):
  del argv
  root = FLAGS.workdir or tempfile.mkdtemp(prefix='compare_models_')
  for path in FLAGS.configs:
    config = load_config(path)
    config.data.source, config.data.folder = 'folder', FLAGS.folder
    config.data.image_size = FLAGS.image_size
    config.train.global_batch_size = config.eval.global_batch_size = FLAGS.batch
    num_train = len(open(os.path.join(FLAGS.folder, 'annotations', 'trainval.txt')).readlines())
    config.train.steps_per_epoch = num_train // FLAGS.batch
    config.train.epochs = -(-FLAGS.steps // config.train.steps_per_epoch)
    config.eval.every_epochs = config.train.epochs  # Score once, at the end.
    config.summaries.explain_every_epochs = 0
    config.runtime.cpu_devices = FLAGS.cpu_devices
    config.predict.sizes, config.predict.flip = (), False  # One pass: compare the training.
    workdir = os.path.join(root, config.model.name)
    start = time.perf_counter()
    results = loop.train(config, workdir)
    seconds = time.perf_counter() - start
    run = specs.describe(config)
    model, _ = loading.load_model(run.network, workdir)
    builder = sources.prepared_builder(run.data, workdir)
    native = score.test_metrics(predictor.Predictor(model, run), builder, run.data)
    steps = results['step']
    print(json.dumps({
        'name': config.model.name, 'config': path, 'parameters': model.count_params(),
        'image_size': FLAGS.image_size, 'batch': FLAGS.batch, 'steps': steps,
        'wall_seconds': round(seconds, 1),
        'train_images_per_s': round(steps * FLAGS.batch / seconds, 2),
        'val_loss': round(results['eval']['loss'], 4),
        'val_mean_iou_model_resolution': round(results['eval']['mean_iou'], 4),
        'pixel_accuracy': round(native['pixel_accuracy'], 4),
        'mean_iou': round(native['mean_iou'], 4),
        'per_class_iou': {k[4:]: round(v, 4) for k, v in native.items() if k.startswith('iou/')},
    }), flush=True)


if __name__ == '__main__':
  app.run(main)
