"""Picture classification: one class per picture (the label feature the config names)."""

from tasks.exclusive import ExclusiveClasses

CLASSIFICATION = ExclusiveClasses(
    name='classification', per_pixel=False, label_feature=None, headline='accuracy',
    best_metrics=('loss', 'accuracy'), class_weights_field='train.balance_classes',
    outputs=('probabilities',))
