"""--mode=score: the workdir's model on the test split, answering as predict answers
(segmentation: masks at each picture's own resolution), over all pictures and per breed."""

import csv
import heapq
import io
import json
import os
import time

from absl import logging
import numpy as np

from data import decode
from data import rasters
from data import sources
from data import spec as data_spec
from inference import loading
from inference import predictor as predictor_lib
from interpretability import colormaps
from records import atomic
from records import summaries
from records import workdir as workdir_lib
import specs
import tasks


PICTURES_CSV = 'score_pictures.csv'  # Beside score.json: where the model fails.
WORST_DIR = 'score_worst'  # Its eval.worst_pictures worst pictures, drawn.
SCORE_RUN = 'score'  # The TensorBoard run holding the same gallery.


def test_metrics(predictor, builder, data: data_spec.Data, worst_pictures: int = 0) -> dict:
  """The test split scored as predict answers: segmentation masks at each picture's own
  resolution (pixel accuracy, IoU), or classes (accuracy); over every picture and per breed
  (`per_group`: breeds, or sub-folders of a files source), worst first. Ignored pixels
  (data.ignore_index, colours off data.mask_colors) count nowhere.

  Masks are made as --mode=predict makes them (probabilities resized back, then the argmax) and
  compared with the original masks, as a user of the predicted masks would see them. The
  `worst_pictures` worst (segmentation) come back too, for the gallery.
  """
  class_names, task = data.class_names, predictor.task
  lookup = sources.mask_lookup(data) if task.per_pixel else None
  confusions, counts, pictures, worst = {}, {}, [], []
  for example in sources.read_encoded(builder, sources.resolve_splits(data).test):
    picture = decode.decode_picture(example['image'], data.bands).numpy()
    if task.per_pixel:
      truth = decode.mask_labels(example[tasks.MASK_FEATURE], lookup)
      predicted = predictor.masks([picture])[0]
    else:
      truth = example[data.label_feature].numpy()
      predicted = task.predicted_labels(predictor.picture_probabilities([picture])).numpy()[0]
    group = _group(data, example)
    confusion = task.label_counts(  # IGNORE counts nowhere.
        truth, predicted, len(class_names)).numpy().astype(np.int64)
    confusions[group] = confusions.get(group, 0) + confusion
    counts[group] = counts.get(group, 0) + 1
    pictures.append(_picture_row(example, group, confusion, class_names, task))
    if task.per_pixel and worst_pictures:  # The k worst kept: a bounded heap.
      heapq.heappush(worst, (-pictures[-1][task.headline], len(pictures),
                             (pictures[-1]['picture'], picture, truth, predicted)))
      if len(worst) > worst_pictures:
        heapq.heappop(worst)
  results = _summary(sum(confusions.values()), class_names, task)
  per_group = {group: {'num_pictures': counts[group], **_summary(confusion, class_names, task)}
               for group, confusion in confusions.items()}
  results['num_pictures'] = sum(counts.values())
  results['per_group'] = dict(sorted(per_group.items(), key=lambda kv: kv[1][task.headline]))
  results['per_picture'] = sorted(pictures, key=lambda row: row[task.headline])
  results['worst'] = [item for _, _, item in sorted(worst, key=lambda entry: (-entry[0],
                                                                               entry[1]))]
  return results


def _picture_row(example, group: str, confusion: np.ndarray, class_names: tuple,
                 task: tasks.Task) -> dict:
  """One picture's scores, and (masks) the pixel counts that sum, over the pictures, to the
  split's: correct and counted pixels, and each class's intersection and union."""
  name = example['file_name'].numpy().decode() if 'file_name' in example else ''
  row = {'picture': name, 'group': group, **_summary(confusion, class_names, task)}
  if task.per_pixel:
    sums = task.pixel_sums(confusion)
    row.update({'pixels': int(sums['pixels']), 'correct': int(sums['correct'])})
    row.update({f'intersection/{c}': int(n) for c, n in zip(class_names, sums['intersection'])})
    row.update({f'union/{c}': int(n) for c, n in zip(class_names, sums['union'])})
  return row


def _write_worst(workdir: str, worst: list, data: data_spec.Data) -> None:
  """Each of the worst pictures as one PNG, worst first (`score_worst/01_<name>.png`): the
  picture, its truth, the prediction and the error map side by side, the legend below; the
  same in TensorBoard's `score` run (`score_worst/01`, the picture's name in its description).
  A rerun's gallery replaces the last one's in both."""
  if not worst:
    return
  folder, board_folder = os.path.join(workdir, WORST_DIR), os.path.join(workdir, SCORE_RUN)
  for where in (folder, board_folder):
    workdir_lib.ensure_writable_dir(where, '--workdir')
    for old in os.listdir(where):
      os.remove(os.path.join(where, old))
  colors = colormaps.class_colors(len(data.class_names), sources.own_class_colors(data, workdir))
  gap = lambda picture: np.pad(picture, ((0, 0), (0, 4), (0, 0)), constant_values=255)
  board = summaries.Summaries(workdir, enabled=True, runs=(SCORE_RUN,))
  for rank, (name, picture, truth, predicted) in enumerate(worst, 1):
    shown = rasters.viewable(picture, data.bands, data.rgb_bands, data.nodata)
    row = np.concatenate([gap(shown), gap(colormaps.mask_overlay(shown, truth, colors=colors)),
                          gap(colormaps.mask_overlay(shown, predicted, colors=colors)),
                          colormaps.error_map(shown, truth, predicted)], 1)
    drawn = colormaps.with_legend(row, data.class_names, colors)
    label = os.path.basename(name) or str(rank)
    loading.write_png(os.path.join(folder, f'{rank:02d}_{label}.png'), drawn)
    board.images(SCORE_RUN, 0, f'{WORST_DIR}/{rank:02d}', drawn[None], description=label)
  board.flush()


def write_pictures_csv(path: str, rows: list) -> None:
  """score_pictures.csv: a line per picture, worst first."""
  text = io.StringIO()
  writer = csv.DictWriter(text, fieldnames=list(rows[0]) if rows else ['picture'])
  writer.writeheader()
  writer.writerows(rows)
  atomic.write_text(path, text.getvalue())


def _group(data_config, example) -> str:
  """What a picture's scores are grouped by: its breed (Oxford), its sub-folder (files in
  sub-folders), else one group."""
  if 'file_name' not in example:
    return 'all'
  name = example['file_name'].numpy().decode()
  if sources.is_oxford(data_config):
    return sources.breed(name)
  return os.path.dirname(name) or 'all'


def _summary(confusion: np.ndarray, class_names: tuple, task: tasks.Task) -> dict:
  results = task.summarize(0.0, 1.0, confusion, class_names)
  del results['loss'], results['num_examples']
  return {k: round(float(v), 4) for k, v in results.items()}


def run(config, workdir: str) -> dict:
  """The workdir's model scored on the test split, with predict's answers (segmentation: at
  the pictures' own resolution); logged and written to DIR/score.json, and each picture's
  scores to DIR/score_pictures.csv, worst first."""
  run = specs.describe(config)
  predictor, source = predictor_lib.load(run, workdir)
  start = time.perf_counter()
  results = test_metrics(predictor, sources.prepared_builder(run.data, workdir), run.data,
                         run.eval.worst_pictures)
  results = {'model': source, 'test_split': sources.resolve_splits(run.data).test,
             'predict_sizes': list(predictor.sizes), 'predict_flip': predictor.flip,
             'seconds': round(time.perf_counter() - start, 1),
             **predictor.task.record(), **results}
  write_pictures_csv(os.path.join(workdir, PICTURES_CSV), results.pop('per_picture'))
  _write_worst(workdir, results.pop('worst'), run.data)
  atomic.write_text(os.path.join(workdir, 'score.json'), json.dumps(results, indent=1) + '\n')
  headline = predictor.task.headline
  logging.info('Score of %s on %s (%d pictures): %s %.4f; per group (breed or folder), worst '
               'first: %s', source, results['test_split'], results['num_pictures'], headline,
               results[headline],
               ', '.join(f'{g} {m[headline]:.4f}' for g, m in results['per_group'].items()))
  return results
