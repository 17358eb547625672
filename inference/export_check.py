"""Is the exported file the model it came from? Both answer the same validation pictures, the
file in its own runtime; their masks are compared pixel for pixel and class by class, and each is
scored against the ground truth. A quantized model that lost its smallest class fails here, not
in production."""

import os

import numpy as np

from data import spec as data_spec
from errors import UserError
from inference import loading
from inference.artifacts import Artifact
from inference.predictor import Predictor
import tasks

OTHER_FORMATS = ('export.format=saved_model takes every model this framework builds; '
                 'BUILD.md "Export" lists what each format takes.')


class Disagrees(UserError):
  """The export was written, but its masks are not the model's: exit status 5."""
  exit_code = 5

  def __init__(self, check: dict, name: str):
    worst = sorted(check['class_agreement'].items(), key=lambda kv: kv[1])[:2]
    super().__init__(
        f'The {name} export agrees with the model on {check["agreement"]:.4f} of what they '
        f'predict, below export.min_agreement={check["min_agreement"]}; the worst classes: '
        + ', '.join(f'{c} {v:.4f}' for c, v in worst)
        + '. Calibrate on more pictures (export.calibration_pictures), export without '
        'quantization, or lower export.min_agreement if this is acceptable. '
        'The file and export.json are kept for inspection.')


def size_in_bytes(path: str) -> int:
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(folder, f))
             for folder, _, files in os.walk(path) for f in files)


def agreement(confusion: np.ndarray, class_names, task: tasks.Task) -> tuple[float, dict]:
  """From the task's counts of the model's labels (as truth) against the export's: the
  fraction of labels that agree, and per class the IoU of the two (classes neither predicted
  are left out): a class the export lost scores 0 however few pixels it holds."""
  sums = task.pixel_sums(confusion)
  return float(sums['correct'] / max(sums['pixels'], 1)), {
      name: float(overlap / union) for name, overlap, union in zip(
          class_names, sums['intersection'], sums['union']) if union > 0}


def check(artifact: Artifact, predictor: Predictor, data: data_spec.Data, workdir: str, *,
          count: int, min_agreement: float) -> dict:
  """The export against the model on the first `count` (export.check_pictures) validation
  pictures: agreement overall and per class, and each one's mean IoU (accuracy) against the
  truth. Passed when both the overall agreement and the mean class agreement reach
  `min_agreement`."""
  if not count:
    return {}
  class_names, task = data.class_names, predictor.task
  num_classes = len(class_names)
  between = np.zeros(task.counts_shape(num_classes))
  scored = {'model': 0.0, 'export': 0.0}
  for picture in loading.eval_pictures(data, workdir, count):
    if task.per_pixel:
      labels = {'model': predictor.masks([picture.pixels])[0],
                'export': artifact.masks([picture.pixels])[0]}
    else:
      labels = {who: task.predicted_labels(answerer.picture_probabilities(
          [picture.pixels])).numpy() for who, answerer in (('model', predictor),
                                                            ('export', artifact))}
    between += task.label_counts(labels['model'], labels['export'], num_classes).numpy()
    for who, label in labels.items():
      scored[who] = scored[who] + task.label_counts(
          task.truth(picture.mask, picture.label), label, num_classes).numpy()
  overall, per_class = agreement(between, class_names, task)
  headline = task.headline
  scores = {who: round(float(task.summarize(0.0, 1.0, confusion, class_names)[headline]), 4)
            for who, confusion in scored.items()}
  mean_class = float(np.mean(list(per_class.values())))
  return {'pictures': count, 'classes': list(class_names), 'agreement': round(overall, 5),
          'mean_class_agreement': round(mean_class, 5),
          'class_agreement': {name: round(v, 5) for name, v in per_class.items()},
          'metric': headline, 'model_score': scores['model'], 'export_score': scores['export'],
          'min_agreement': min_agreement, 'passed': min(overall, mean_class) >= min_agreement}


def table(check: dict) -> str:
  """The check as the lines export prints."""
  if not check:
    return 'Not checked (export.check_pictures=0).'
  rows = [f'Checked on {check["pictures"]} validation pictures against the model '
          f'(needed: {check["min_agreement"]}):', f'  {"class":<24} agreement']
  rows += [f'  {name:<24} ' + (f'{check["class_agreement"][name]:.4f}'
                               if name in check['class_agreement'] else 'predicted by neither')
           for name in check['classes']]
  rows += [f'  {"mean over classes":<24} {check["mean_class_agreement"]:.4f}',
           f'  {"all labels":<24} {check["agreement"]:.4f}',
           f'  {check["metric"]}: model {check["model_score"]:.4f}, export '
           f'{check["export_score"]:.4f}  -> {"passed" if check["passed"] else "FAILED"}']
  return '\n'.join(rows)
