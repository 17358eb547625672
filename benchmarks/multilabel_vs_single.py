"""The multi-label task against the best single-label encodings of the same overlapping set.

    python -m benchmarks.multilabel_vs_single --out=/tmp/overlap --steps=300 [--stains=6]

writes a set whose classes overlap: tests/own_data.py's discs, stripes and squares (a stripe
crosses a disc in most pictures), or with --stains=K a microscopy-like set of K-band pictures
in which every class is cells in its own stain (band), each class in a picture with chance
0.6 and cells of several stains overlapping at random (a cell in two stains); trains the configs/own_multilabel.py recipe (sigmoid per
class, thresholds tuned on validation) and, with the same recipe and steps, two single-label
encodings of the same masks: `combinations` (every combination of classes its own class, the
lossless one) and `priority` (where classes overlap, the later one wins, as a z-ordered
export does). Each is scored on the test split as --mode=score scores (masks at the pictures'
own size), per class as a binary problem against the multi-label truth. Prints one JSON line:
per encoding and class the IoU, and for the multi-label run its validation mean IoU at the
tuned thresholds and at 0.5.
"""

import itertools
import json
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from configs import own_multilabel
from data import files_pairing
from inference import predictor as predictor_lib
import specs
import tasks
from tests import own_data
from training import loop
from training import settle

flags.DEFINE_string('out', '/tmp/multilabel_vs_single', 'Where the set and the runs go.')
flags.DEFINE_integer('train', 48, 'Training pictures (a sixth held out for validation).')
flags.DEFINE_integer('size', 64, 'Picture side (and the model input).')
flags.DEFINE_integer('steps', 300, 'Optimizer steps of every run.')
flags.DEFINE_integer('seed', 0, 'Random seed of the set.')
flags.DEFINE_integer('stains', 0, '0: the discs, stripes and squares; K: K stains (classes).')
FLAGS = flags.FLAGS
NAMES = own_data.MULTILABEL_CLASSES


def stained_cells(rng: np.random.Generator, size: int, stains: int) -> tuple:
  """(float32 picture [size, size, stains], 0/1 labels [size, size, stains]): each stain's
  cells (1-2 discs) present with chance 0.6, glowing in its own band over a noisy background
  with a little of the other bands' light (cross-talk)."""
  yy, xx = np.mgrid[0:size, 0:size]
  labels = np.zeros((size, size, stains), np.uint8)
  for k in range(stains):
    if rng.uniform() < 0.6:
      for _ in range(int(rng.integers(1, 3))):
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        radius = rng.uniform(0.1, 0.2) * size
        labels[..., k] |= ((yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2).astype(np.uint8)
  mixing = np.eye(stains) * 100 + 8
  picture = labels @ mixing + rng.normal(40, 12, (size, size, stains))
  return picture.astype(np.float32), labels


def write_stained_set(folder: str, count: int, size: int, stains: int, seed: int) -> dict:
  """Pictures as .npy in <folder>/<split>/images, masks as bitmask PNGs (bit k: stain k) in
  <folder>/<split>/masks; returns {stem: labels}."""
  rng = np.random.default_rng(seed)
  truth = {}
  for split in ('train', 'test'):
    for index in range(count if split == 'train' else max(count // 3, 2)):
      picture, labels = stained_cells(rng, size, stains)
      stem = f'{split}_{index:03d}'
      for kind in ('images', 'masks'):
        os.makedirs(os.path.join(folder, split, kind), exist_ok=True)
      np.save(os.path.join(folder, split, 'images', stem + '.npy'), picture)
      tf.io.write_file(os.path.join(folder, split, 'masks', stem + '.png'),
                       tf.io.encode_png(bits(labels).astype(np.uint16)[..., None]))
      truth[stem] = labels
  return truth


def bits(labels: np.ndarray) -> np.ndarray:
  """Each pixel's combination of classes as an integer: bit k for class k."""
  return (labels.astype(np.int64) << np.arange(labels.shape[-1])).sum(-1)


def combinations_of(truth: dict) -> list:
  """The combinations of classes (as `bits`) that occur in the pictures trained on (not held
  out for validation), in order: the classes of the `combinations` encoding (one that never
  occurs could not be learnt)."""
  held_out = own_multilabel.get_config().data.validation_fraction
  return sorted(set().union(*(np.unique(bits(labels)).tolist() for stem, labels in truth.items()
                              if stem.startswith('train')
                              and not files_pairing.is_held_out(stem, held_out))))


def single_label_ids(labels: np.ndarray, encoding: str, combinations: list) -> np.ndarray:
  """uint8 class ids of 0/1 labels [H, W, C]: `combinations`: the index of the pixel's
  combination (IGNORE for one never trained on); `priority`: 0 background, else 1 + the last
  class present."""
  if encoding == 'combinations':
    table = np.full(2 ** labels.shape[-1], tasks.IGNORE, np.uint8)
    table[combinations] = np.arange(len(combinations))
    return table[bits(labels)]
  last = np.where(labels.any(-1), labels.shape[-1] - np.argmax(labels[..., ::-1], -1), 0)
  return last.astype(np.uint8)


def labels_of_ids(ids: np.ndarray, encoding: str, combinations: list) -> np.ndarray:
  """The 0/1 labels [H, W, C] a single-label prediction stands for."""
  if encoding == 'combinations':
    codes = np.asarray(combinations)[ids]
    return ((codes[..., None] >> np.arange(len(NAMES))) & 1).astype(np.uint8)
  return (ids[..., None] == np.arange(1, len(NAMES) + 1)).astype(np.uint8)


def encoding_names(encoding: str, combinations: list) -> tuple:
  if encoding == 'priority':
    return ('background',) + NAMES
  return tuple('+'.join(n for k, n in enumerate(NAMES) if code >> k & 1) or 'background'
               for code in combinations)


def write_single_label_masks(folder: str, truth: dict, encoding: str,
                             combinations: list) -> str:
  """<folder>/<encoding>/<split>/masks/<stem>.png of every picture's class ids."""
  for stem, labels in truth.items():
    split = stem.split('_')[0]
    path = os.path.join(folder, encoding, split, 'masks', stem + '.png')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(
        single_label_ids(labels, encoding, combinations)[..., None]))
  return os.path.join(folder, encoding)


def config_for(folder: str, masks: str, task: str, class_names: tuple):
  config = own_multilabel.get_config()
  if FLAGS.stains:
    config.data.bands = FLAGS.stains
    config.data.augment.color_jitter = 0.0
  config.task = task
  config.data.class_names = class_names
  config.data.image_size = FLAGS.size
  config.data.files.train_images = os.path.join(folder, 'train', 'images')
  config.data.files.train_masks = os.path.join(masks, 'train', 'masks')
  config.data.files.test_images = os.path.join(folder, 'test', 'images')
  config.data.files.test_masks = os.path.join(masks, 'test', 'masks')
  config.model.widths = (16, 32, 64)
  config.train.steps = FLAGS.steps
  config.train.steps_per_epoch = max(FLAGS.steps // 6, 1)
  config.train.loss = 'cross_entropy+dice' if task == 'multilabel' else 'cross_entropy+jaccard'
  config.data.deterministic = True
  config.summaries.explain_every_epochs = 0
  if task != 'multilabel':
    config.model.thresholds = 0.5
    config.data.ignore_index = tasks.IGNORE
  return settle.settle_config(config)


def per_class_iou(predicted: list, truth: list) -> dict:
  """Each class's IoU over every test picture, as a binary problem."""
  predicted, truth = np.concatenate([p.reshape(-1, len(NAMES)) for p in predicted]), \
      np.concatenate([t.reshape(-1, len(NAMES)) for t in truth])
  return {name: round(float(np.sum(predicted[:, k] & truth[:, k])
                            / max(np.sum(predicted[:, k] | truth[:, k]), 1)), 4)
          for k, name in enumerate(NAMES)}


def main(_):
  global NAMES  # pylint: disable=global-statement
  folder = os.path.join(FLAGS.out, 'set')
  if FLAGS.stains:
    NAMES = tuple(f'stain{k}' for k in range(FLAGS.stains))
    truth = write_stained_set(folder, FLAGS.train, FLAGS.size, FLAGS.stains, FLAGS.seed)
    pictures = [np.load(os.path.join(folder, 'test', 'images', s + '.npy'))
                for s in sorted(s for s in truth if s.startswith('test'))]
  else:
    truth = own_data.write_multilabel_set(folder, 'bands', count=FLAGS.train, size=FLAGS.size,
                                          seed=FLAGS.seed)
    pictures = [tf.io.decode_png(tf.io.read_file(os.path.join(folder, 'test', 'images',
                                                              s + '.png'))).numpy()
                for s in sorted(s for s in truth if s.startswith('test'))]
  stems = sorted(s for s in truth if s.startswith('test'))
  combinations = combinations_of(truth)
  unseen = {int(code) for s in stems for code in np.unique(bits(truth[s]))} - set(combinations)
  report = {'train_pictures': FLAGS.train, 'test_pictures': len(stems), 'size': FLAGS.size,
            'steps': FLAGS.steps, 'classes': len(NAMES),
            'combinations_in_train': len(combinations),
            'test_share_of_combinations_unseen_in_train': round(float(np.mean(
                [np.isin(bits(truth[s]), list(unseen)).mean() for s in stems])), 4),
            'overlap_share': {
                f'{a}/{b}': round(float(np.mean([np.mean(truth[s][..., i] & truth[s][..., j])
                                                 for s in stems])), 4)
                for (i, a), (j, b) in itertools.combinations(enumerate(NAMES), 2)
                if FLAGS.stains == 0}}
  for encoding in ('multilabel', 'combinations', 'priority'):
    if encoding == 'multilabel':
      config = config_for(folder, folder, 'multilabel', NAMES)
    else:
      masks = write_single_label_masks(FLAGS.out, truth, encoding, combinations)
      config = config_for(folder, masks, 'segmentation',
                          encoding_names(encoding, combinations))
    workdir = os.path.join(FLAGS.out, 'runs', encoding)
    loop.train(config, workdir)
    predictor, _ = predictor_lib.load(specs.describe(config), workdir)
    masks = predictor.masks(pictures)
    if encoding != 'multilabel':
      masks = [labels_of_ids(m, encoding, combinations) for m in masks]
    report[encoding] = per_class_iou(masks, [truth[s] for s in stems])
    if encoding == 'multilabel':
      with open(os.path.join(workdir, 'best_model.json')) as f:
        best = json.load(f)
      report['multilabel_validation'] = {
          'mean_iou_tuned': round(best['mean_iou'], 4),
          'mean_iou_at_0.5': round(best['mean_iou_at_0.5'], 4),
          'thresholds': {n: best[f'threshold/{n}'] for n in NAMES}}
  print(json.dumps(report))


if __name__ == '__main__':
  app.run(main)
