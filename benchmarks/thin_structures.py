"""A set of large grey pictures with thin structures (cell membranes between Voronoi cells, 2-3
px wide), in the own-data folder layout, and the ceiling a squashed recipe cannot pass on it.

    python -m benchmarks.thin_structures --out=/tmp/thin --train=24 --test=8 --side=512

writes OUT/{train,test}/{images,masks}/NAME.png (masks 0 cell, 255 membrane) and prints one JSON
line: how many pictures, and the mean IoU of a perfect predictor that works at --squash px
(its masks downscaled by nearest neighbour, then upscaled back): what training on squashed
pictures can reach at best. Train on it with configs/own_binary.py (BUILD.md "Large pictures").
"""

import json
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

flags.DEFINE_string('out', '/tmp/thin_structures', 'Where the set is written.')
flags.DEFINE_integer('train', 24, 'Training pictures.')
flags.DEFINE_integer('test', 8, 'Test pictures.')
flags.DEFINE_integer('side', 512, 'Pictures are side x side.')
flags.DEFINE_integer('cells', 70, 'Cells per picture.')
flags.DEFINE_integer('squash', 128, 'The squashed recipe\'s side, for the ceiling.')
flags.DEFINE_integer('seed', 0, 'Random seed.')
FLAGS = flags.FLAGS


def cell_picture(rng: np.random.Generator, side: int, cells: int) -> tuple:
  """(uint8 grey picture [side, side, 3], uint8 mask: 1 on membranes): Voronoi cells of their
  own brightness and texture, with dark membranes where the two nearest centres are almost
  equally near, then blur and sensor noise."""
  centres = rng.uniform(0, side, (cells, 2))
  y, x = np.mgrid[0:side, 0:side].astype(np.float32)
  distance = np.sqrt((y[..., None] - centres[:, 0]) ** 2 + (x[..., None] - centres[:, 1]) ** 2)
  nearest = np.sort(distance, axis=-1)
  membrane = (nearest[..., 1] - nearest[..., 0]) < rng.uniform(1.6, 2.4)
  owner = np.argmin(distance, axis=-1)
  grey = rng.uniform(120, 200, cells)[owner]
  texture = tf.nn.avg_pool2d(rng.normal(0, 25, (1, side, side, 1)).astype(np.float32), 5, 1,
                             'SAME').numpy()[0, ..., 0]
  grey = np.where(membrane, rng.uniform(50, 80), grey + texture)
  blurred = tf.nn.avg_pool2d(grey[None, ..., None].astype(np.float32), 2, 1, 'SAME').numpy()
  picture = np.clip(blurred[0, ..., 0] + rng.normal(0, 10, grey.shape), 0, 255).astype(np.uint8)
  return np.repeat(picture[..., None], 3, -1), membrane.astype(np.uint8)


def squashed_ceiling(masks: list, squash: int) -> float:
  """Mean IoU (cells and membranes) of the truth itself taken down to squash px and back."""
  confusion = np.zeros((2, 2))
  for mask in masks:
    small = tf.image.resize(mask[..., None], (squash, squash), 'nearest')
    back = tf.image.resize(small, mask.shape, 'nearest').numpy()[..., 0]
    confusion += np.histogram2d(mask.ravel(), back.ravel(), bins=2, range=[[0, 2], [0, 2]])[0]
  iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
  return float(iou.mean()), [float(v) for v in iou]


def main(_):
  rng = np.random.default_rng(FLAGS.seed)
  test_masks = []
  for split, count in (('train', FLAGS.train), ('test', FLAGS.test)):
    for folder in ('images', 'masks'):
      os.makedirs(os.path.join(FLAGS.out, split, folder), exist_ok=True)
    for index in range(count):
      picture, mask = cell_picture(rng, FLAGS.side, FLAGS.cells)
      name = f'{split}_{index:03d}.png'
      tf.io.write_file(os.path.join(FLAGS.out, split, 'images', name), tf.io.encode_png(picture))
      tf.io.write_file(os.path.join(FLAGS.out, split, 'masks', name),
                       tf.io.encode_png(mask[..., None] * 255))
      if split == 'test':
        test_masks.append(mask)
  ceiling, per_class = squashed_ceiling(test_masks, FLAGS.squash)
  print(json.dumps({'out': FLAGS.out, 'train': FLAGS.train, 'test': FLAGS.test,
                    'side': FLAGS.side, 'membrane_fraction': float(np.mean(test_masks)),
                    f'squashed_{FLAGS.squash}_ceiling_mean_iou': round(ceiling, 4),
                    'ceiling_iou_cell_membrane': [round(v, 4) for v in per_class]}))


if __name__ == '__main__':
  app.run(main)
