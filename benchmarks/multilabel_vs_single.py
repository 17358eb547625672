"""The multi-label task against the best single-label encodings of the same overlapping set.

    python -m benchmarks.multilabel_vs_single --out=/tmp/overlap --steps=300

writes a set whose classes overlap (tests/own_data.py's discs, stripes and squares: a stripe
crosses a disc in most pictures), trains the configs/own_multilabel.py recipe (sigmoid per
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
from inference import predictor as predictor_lib
import tasks
from tests import own_data
from training import loop
from training import settle

flags.DEFINE_string('out', '/tmp/multilabel_vs_single', 'Where the set and the runs go.')
flags.DEFINE_integer('train', 48, 'Training pictures (a sixth held out for validation).')
flags.DEFINE_integer('size', 64, 'Picture side (and the model input).')
flags.DEFINE_integer('steps', 300, 'Optimizer steps of every run.')
flags.DEFINE_integer('seed', 0, 'Random seed of the set.')
FLAGS = flags.FLAGS
NAMES = own_data.MULTILABEL_CLASSES


def bits(labels: np.ndarray) -> np.ndarray:
  """Each pixel's combination of classes as an integer: bit k for class k."""
  return (labels.astype(np.int64) << np.arange(labels.shape[-1])).sum(-1)


def combinations_of(truth: dict) -> list:
  """The combinations of classes (as `bits`) that occur in the training pictures, in order:
  the classes of the `combinations` encoding (one that never occurs could not be learnt)."""
  return sorted(set().union(*(np.unique(bits(labels)).tolist() for stem, labels in truth.items()
                              if stem.startswith('train'))))


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
  folder = os.path.join(FLAGS.out, 'set')
  truth = own_data.write_multilabel_set(folder, 'bands', count=FLAGS.train, size=FLAGS.size,
                                        seed=FLAGS.seed)
  stems = sorted(s for s in truth if s.startswith('test'))
  pictures = [tf.io.decode_png(tf.io.read_file(os.path.join(folder, 'test', 'images',
                                                            s + '.png'))).numpy()
              for s in stems]
  report = {'train_pictures': FLAGS.train, 'test_pictures': len(stems), 'size': FLAGS.size,
            'steps': FLAGS.steps,
            'overlap_share': {
                f'{a}/{b}': round(float(np.mean([np.mean(truth[s][..., i] & truth[s][..., j])
                                                 for s in stems])), 4)
                for (i, a), (j, b) in itertools.combinations(enumerate(NAMES), 2)}}
  combinations = combinations_of(truth)
  for encoding in ('multilabel', 'combinations', 'priority'):
    if encoding == 'multilabel':
      config = config_for(folder, folder, 'multilabel', NAMES)
    else:
      masks = write_single_label_masks(FLAGS.out, truth, encoding, combinations)
      config = config_for(folder, masks, 'segmentation',
                          encoding_names(encoding, combinations))
    workdir = os.path.join(FLAGS.out, 'runs', encoding)
    loop.train(config, workdir)
    predictor, _ = predictor_lib.load(config, workdir)
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
