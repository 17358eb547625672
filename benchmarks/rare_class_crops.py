"""Class-balanced crops against uniform crops on a set whose one class is rare.

    python -m benchmarks.rare_class_crops --out=/tmp/rare --steps=300

writes large pictures (--side px) of grey textured ground (class 0), a few wide bands (class 1)
and a handful of small spots (class 2, under 1 % of the pixels), in the own-data folder layout;
trains configs/own_data.py's recipe on --crop px crops at the pictures' own resolution, once
with data.crop_sampling='uniform' and once 'class_balanced' (same steps, seed and everything
else), and scores both on the test pictures as --mode=score does (sliding windows, the
pictures' own size). Prints one JSON line: the rare class's pixel share, and per sampling each
class's IoU and the mean.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from configs import own_data
from inference import score
from inference import predictor as predictor_lib
from data import sources
import specs
from training import loop
from training import settle

flags.DEFINE_string('out', '/tmp/rare_class_crops', 'Where the set and the runs go.')
flags.DEFINE_integer('train', 24, 'Training pictures (a sixth held out for validation).')
flags.DEFINE_integer('test', 8, 'Test pictures.')
flags.DEFINE_integer('side', 256, 'Pictures are side x side.')
flags.DEFINE_integer('crop', 64, 'Training crops are crop x crop.')
flags.DEFINE_integer('steps', 300, 'Optimizer steps of each run.')
flags.DEFINE_float('temperature', 0.0, 'data.crop_temperature of the class-balanced run.')
flags.DEFINE_integer('seed', 0, 'Random seed of the set.')
FLAGS = flags.FLAGS
CLASSES = ('ground', 'band', 'spot')


def scene(rng: np.random.Generator, side: int) -> tuple:
  """(uint8 picture [side, side, 3], class ids [side, side])."""
  classes = np.zeros((side, side), np.uint8)
  for _ in range(2):
    top = int(rng.integers(0, side - side // 10))
    classes[top:top + side // 10] = 1
  yy, xx = np.mgrid[0:side, 0:side]
  for _ in range(int(rng.integers(2, 5))):
    cy, cx = rng.integers(4, side - 4, 2)
    classes[(yy - cy) ** 2 + (xx - cx) ** 2 <= 9] = 2
  colours = np.array([[110, 110, 110], [60, 140, 60], [150, 90, 150]], np.float32)
  picture = colours[classes] + rng.normal(0, 18, (side, side, 3))
  return np.clip(picture, 0, 255).astype(np.uint8), classes


def write_set(folder: str) -> float:
  """The set in <folder>/{train,test}/{images,masks}; returns the spots' pixel share."""
  rng = np.random.default_rng(FLAGS.seed)
  spot_pixels = total = 0
  for split, count in (('train', FLAGS.train), ('test', FLAGS.test)):
    for index in range(count):
      picture, classes = scene(rng, FLAGS.side)
      spot_pixels, total = spot_pixels + np.sum(classes == 2), total + classes.size
      for kind, data in (('images', picture), ('masks', classes[..., None])):
        path = os.path.join(folder, split, kind, f'{split}_{index:03d}.png')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tf.io.write_file(path, tf.io.encode_png(data))
  return spot_pixels / total


def config_for(folder: str, sampling: str):
  config = own_data.get_config()
  config.data.class_names = CLASSES
  for split in ('train', 'test'):
    config.data.files[f'{split}_images'] = os.path.join(folder, split, 'images')
    config.data.files[f'{split}_masks'] = os.path.join(folder, split, 'masks')
  config.data.resize = 'none'
  config.data.crop_size = (FLAGS.crop, FLAGS.crop)
  config.data.crop_sampling = sampling
  config.data.crop_temperature = FLAGS.temperature
  config.data.deterministic = True
  config.model.widths = (16, 32, 64)
  config.train.steps = FLAGS.steps
  config.train.steps_per_epoch = max(FLAGS.steps // 3, 1)
  config.summaries.explain_every_epochs = 0
  return settle.settle_config(config)


def main(_):
  folder = os.path.join(FLAGS.out, 'set')
  report = {'spot_share': round(float(write_set(folder)), 5), 'side': FLAGS.side,
            'crop': FLAGS.crop, 'steps': FLAGS.steps, 'temperature': FLAGS.temperature}
  for sampling in ('uniform', 'class_balanced'):
    config = config_for(folder, sampling)
    workdir = os.path.join(FLAGS.out, 'runs', sampling)
    loop.train(config, workdir)
    run = specs.describe(config)
    predictor, _ = predictor_lib.load(run, workdir)
    results = score.test_metrics(predictor, sources.prepared_builder(run.data, workdir),
                                 run.data)
    report[sampling] = {'mean_iou': round(results['mean_iou'], 4),
                        **{name: round(results[f'iou/{name}'], 4) for name in CLASSES}}
  print(json.dumps(report))


if __name__ == '__main__':
  app.run(main)
