"""Semantic segmentation: a class id for every pixel."""

from tasks.base import MASK_FEATURE
from tasks.exclusive import ExclusiveClasses

SEGMENTATION = ExclusiveClasses(
    name='segmentation', per_pixel=True, label_feature=MASK_FEATURE, headline='mean_iou',
    best_metrics=('loss', 'mean_iou', 'mean_dice', 'mean_precision', 'mean_recall',
                  'pixel_accuracy'),
    class_weights_field='train.class_weights', outputs=('masks', 'probabilities'))
