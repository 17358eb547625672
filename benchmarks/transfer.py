"""Transfer across runs, measured: a model trained on one set, fine-tuned onto another set with
another class count, against the same budget from random weights.

Source: the pets sample's trainval pictures, 3 classes (pet, background, outline; the
`folder` source). Target: the sample's test pictures, which the source never read, with 4
classes (background, cat, dog, outline: the pet's class is its species), as a `files` set:
a fixed 70 % of them (by a hash of the name) train, the rest are scored. Both target runs use
configs/seg_unet.py with the same backbone, size, steps and seed; they differ only in
`model.weights` (the source run's workdir, or 'random'). Prints one JSON line:

    python -m benchmarks.transfer --folder=../shared/oxford_pets_sample [--source_steps=200]
"""

import hashlib
import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

flags.DEFINE_string('folder', None, 'The Oxford layout (the pets sample).')
flags.DEFINE_string('workdir', '/tmp/segstream_transfer', 'Where runs and the target set go.')
flags.DEFINE_string('backbone', 'resnet18', 'The unet backbone of all three runs.')
flags.DEFINE_integer('image_size', 128, 'Input side of all three runs.')
flags.DEFINE_integer('source_steps', 200, 'Training steps of the source run.')
flags.DEFINE_integer('target_steps', 60, 'Training steps of each target run.')
flags.DEFINE_integer('seed', 1337, 'Seed of the target runs.')
FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ('background', 'cat', 'dog', 'outline')


def _target_set(folder: str, out: str) -> dict:
  """The test pictures with 4-class masks, in train/ and test/ folders; their counts."""
  counts = {'train': 0, 'test': 0}
  for line in open(os.path.join(folder, 'annotations', 'test.txt')):
    name, _, species, _ = line.split()
    split = 'train' if int(hashlib.md5(name.encode()).hexdigest(), 16) % 10 < 7 else 'test'
    trimap = tf.io.decode_png(tf.io.read_file(
        os.path.join(folder, 'annotations', 'trimaps', name + '.png'))).numpy()[..., 0]
    mask = np.select([trimap == 1, trimap == 3], [int(species), 3], 0).astype(np.uint8)
    for kind in ('images', 'masks'):
      os.makedirs(os.path.join(out, split, kind), exist_ok=True)
    with open(os.path.join(folder, 'images', name + '.jpg'), 'rb') as f:
      picture = f.read()
    with open(os.path.join(out, split, 'images', name + '.jpg'), 'wb') as f:
      f.write(picture)
    tf.io.write_file(os.path.join(out, split, 'masks', name + '.png'),
                     tf.io.encode_png(mask[..., None]))
    counts[split] += 1
  return counts


def _main_py(workdir: str, *overrides: str, mode: str = 'train_and_eval') -> float:
  """Runs main.py with configs/seg_unet.py as a user would; returns its wall time."""
  started = time.perf_counter()
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'main.py'), '--config=configs/seg_unet.py',
       f'--workdir={workdir}', f'--mode={mode}', f'--config.model.backbone={FLAGS.backbone}',
       f'--config.data.image_size={FLAGS.image_size}', '--config.predict.sizes=()',
       '--config.predict.flip=False', '--config.train.warmup_steps=10',
       '--config.summaries.explain_every_epochs=0', '--config.runtime.cpu_devices=2',
       *overrides], cwd=REPO, capture_output=True, text=True,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  if result.returncode:
    raise SystemExit(f'main.py {mode} failed:\n{result.stderr[-3000:]}')
  return time.perf_counter() - started


def main(argv):
  del argv
  os.makedirs(FLAGS.workdir, exist_ok=True)
  source = os.path.join(FLAGS.workdir, 'source')
  source_s = _main_py(source, '--config.data.source=folder',
                      f'--config.data.folder={FLAGS.folder}',
                      '--config.model.weights=random', '--config.eval.every_epochs=1',
                      f'--config.train.epochs={FLAGS.source_steps // 20}',
                      '--config.train.steps_per_epoch=20')
  target_set = os.path.join(FLAGS.workdir, 'target_set')
  counts = _target_set(FLAGS.folder, target_set)
  files = ['--config.data.source=files', '--config.data.label_map=',
           f'--config.data.class_names={CLASSES}', f'--config.seed={FLAGS.seed}',
           f'--config.data.files.train_images={target_set}/train/images',
           f'--config.data.files.train_masks={target_set}/train/masks',
           f'--config.data.files.test_images={target_set}/test/images',
           f'--config.data.files.test_masks={target_set}/test/masks',
           '--config.data.validation_fraction=0.15', '--config.eval.every_epochs=1',
           f'--config.train.epochs={FLAGS.target_steps // 10}',
           '--config.train.steps_per_epoch=10']
  row = {'backbone': FLAGS.backbone, 'image_size': FLAGS.image_size,
         'source_steps': FLAGS.source_steps, 'source_train_s': round(source_s, 1),
         'target_steps': FLAGS.target_steps, 'target_pictures': counts}
  for start, weights in (('from_source', source), ('from_random', 'random')):
    workdir = os.path.join(FLAGS.workdir, f'target_{start}')
    seconds = _main_py(workdir, *files, f'--config.model.weights={weights}')
    _main_py(workdir, *files, f'--config.model.weights={weights}', mode='score')
    with open(os.path.join(workdir, 'score.json')) as f:
      scored = json.load(f)
    row[start] = {'mean_iou': scored['mean_iou'], 'train_s': round(seconds, 1),
                  **{k: v for k, v in scored.items() if k.startswith('iou/')}}
  row['gain'] = round(row['from_source']['mean_iou'] - row['from_random']['mean_iou'], 4)
  print(json.dumps(row), flush=True)


if __name__ == '__main__':
  flags.mark_flag_as_required('folder')
  app.run(main)
