"""The kinds of problem a config can name (`config.task`), one Task each, found by name."""

from tasks.base import IGNORE, MASK_FEATURE, Task, as_two_classes, predicts_classes
from tasks.classification import CLASSIFICATION
from tasks.multilabel import MULTILABEL
from tasks.segmentation import SEGMENTATION

TASKS = {task.name: task for task in (SEGMENTATION, CLASSIFICATION, MULTILABEL)}


def of(config) -> Task:
  """The Task `config.task` names (the config is checked first: the name is known), with what
  the model section decides of it."""
  return TASKS[config.task].settled(config.model)


def of_label(label_feature: str) -> Task:
  """The Task that learns `label_feature`: a task's own mask feature names it, any other
  feature is a classifier's."""
  for task in TASKS.values():
    if task.label_feature == label_feature:
      return task
  return CLASSIFICATION


def of_data(data_config) -> Task:
  """The Task whose labels a data section holds (its label feature is settled from the
  config's task at the door, training/settle.py)."""
  return of_label(data_config.label_feature)


__all__ = ['CLASSIFICATION', 'IGNORE', 'MASK_FEATURE', 'MULTILABEL', 'SEGMENTATION', 'TASKS',
           'Task', 'as_two_classes', 'of', 'of_data', 'of_label', 'predicts_classes']
