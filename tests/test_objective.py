"""What the optimizer minimises: each loss term against its hand computation and its known
special cases, and decoupled weight decay; what evaluation reports: Dice, precision, recall."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tasks
from tests.conftest import small_config
from tasks import losses
from training import optimizers


def _one_hot_prediction(mask: np.ndarray, confidence: float = 0.998) -> tf.Tensor:
  """Probabilities that put `confidence` on the class of `mask` ([N, H, W] of 0/1/2)."""
  rest = (1.0 - confidence) / 2
  return tf.constant(np.eye(3)[mask] * (confidence - rest) + rest, tf.float32)


def test_soft_jaccard_charges_a_missed_thin_class_more_than_cross_entropy_does():
  """16 outline pixels predicted as background, or 16 background pixels predicted as pet:
  pixel cross-entropy charges both the same; the Jaccard term charges losing the thin class
  (its IoU falls to ~0) several times more, as the mean IoU that is reported would."""
  mask = np.ones((1, 16, 16), np.int64)  # Background...
  mask[0, 2:10, 2:10] = 0  # ... a pet ...
  mask[0, 12, :] = 2  # ... and a one-pixel outline row.
  labels = tf.constant(mask[..., None])
  no_outline, pet_grown = mask.copy(), mask.copy()
  no_outline[0, 12, :] = 1
  pet_grown[0, 10, :] = 0  # 16 background pixels called pet.
  jaccard_alone = losses.LossSpec(terms=(('jaccard', 1.0),))
  perfect = losses.per_example_loss(labels, _one_hot_prediction(mask), jaccard_alone)
  assert float(perfect[0]) < 0.02

  def cost(prediction, jaccard_weight):
    spec = losses.LossSpec(terms=(('cross_entropy', 1.0), ('jaccard', jaccard_weight)))
    return float(losses.per_example_loss(labels, _one_hot_prediction(prediction), spec)[0])
  np.testing.assert_allclose(cost(no_outline, 0.0), cost(pet_grown, 0.0), rtol=1e-5)
  jaccard_no_outline = cost(no_outline, 1.0) - cost(no_outline, 0.0)
  jaccard_pet_grown = cost(pet_grown, 1.0) - cost(pet_grown, 0.0)
  assert jaccard_no_outline > 0.3
  assert jaccard_no_outline > 2.5 * jaccard_pet_grown


def test_adamw_decays_kernels_but_not_batch_norm_or_biases():
  config = small_config(train__optimizer='adamw', train__weight_decay=0.5,
                        train__learning_rate=0.1)
  inputs = keras.Input((4, 4, 2))
  x = keras.layers.Conv2D(3, 1, name='conv')(inputs)
  outputs = keras.layers.BatchNormalization(name='bn')(x)
  model = keras.Model(inputs, outputs)
  model.get_layer('conv').bias.assign(tf.ones([3]))
  before = {v.path: v.numpy().copy() for v in model.trainable_variables}
  optimizer = optimizers.make_optimizer(config.train, 'float32')
  optimizer.apply([tf.zeros_like(v) for v in model.trainable_variables],
                  model.trainable_variables)
  after = {v.path: v.numpy() for v in model.trainable_variables}
  np.testing.assert_allclose(after['conv/kernel'], before['conv/kernel'] * (1 - 0.1 * 0.5),
                             rtol=1e-5)
  for path in ('conv/bias', 'bn/gamma', 'bn/beta'):
    np.testing.assert_array_equal(after[path], before[path])


@pytest.mark.parametrize('name', ['adam', 'adamw'])
def test_adam_and_adamw_update_as_keras_does_on_two_replicas_under_loss_scaling(
    name, monkeypatch):
  """The optimizers as built (Adam's fused update) against Keras' own classes built the same
  way: 4 steps of random gradients on 2 replicas, float16 loss scaling, one variable at half
  the rate (an encoder's multiplier), decoupled decay for adamw: the same weights to 2e-6 and
  moments to 1e-4 (the kernel takes beta_2 in float32 and computes 1 - beta_2 from it:
  0.00099998713 for 0.999, 1.3e-5 from Keras' 0.001)."""
  train = small_config(train__optimizer=name, train__learning_rate=0.05,
                       train__weight_decay=0.1 if name == 'adamw' else 0.0,
                       train__encoder_lr_multiplier=0.5, settle=False).train
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  rng = np.random.default_rng(0)
  initial = [rng.normal(size=shape).astype(np.float32) for shape in ((3, 3, 4, 8), (8,))]
  gradients = [[rng.normal(size=v.shape).astype(np.float32) for v in initial]
               for _ in range(4)]

  def train_with(kind):
    monkeypatch.setitem(optimizers.OPTIMIZERS, name, kind)
    with strategy.scope():
      variables = [keras.Variable(value, name=var_name)
                   for value, var_name in zip(initial, ('kernel', 'bias'))]
      optimizer = optimizers.make_optimizer(train, 'mixed_float16', total_steps=4,
                                            encoder_variables=variables[:1])
      optimizer.build(variables)

    @tf.function
    def step(grads):
      strategy.run(lambda: optimizer.apply(
          [g * optimizer.scale_loss(1.0) / 2 for g in grads], variables))

    for grads in gradients:
      step(grads)
    graph = step.get_concrete_function(gradients[0]).graph.as_graph_def()
    kernels = {node.op for function in graph.library.function for node in function.node_def}
    inner = optimizer.inner_optimizer
    return ([v.numpy() for v in variables + inner._momentums + inner._velocities],  # pylint: disable=protected-access
            'ResourceApplyAdam' in kernels)

  fused, fused_kernel = train_with(optimizers.OPTIMIZERS[name])
  reference, keras_kernel = train_with(
      getattr(keras.optimizers, {'adam': 'Adam', 'adamw': 'AdamW'}[name]))
  assert fused_kernel and not keras_kernel
  assert np.abs(fused[0] - initial[0]).mean() > 0.02  # 4 steps at rates 0.025 and 0.05.
  for ours, keras_own in zip(fused[:2], reference[:2]):  # Weights: to 1e-6 of steps of ~0.05.
    np.testing.assert_allclose(ours, keras_own, rtol=0, atol=2e-6)
  for ours, keras_own in zip(fused[2:], reference[2:]):  # First and second moments.
    np.testing.assert_allclose(ours, keras_own, rtol=1e-4, atol=1e-9)


def test_dice_precision_and_recall_equal_their_hand_computation_and_ignore_padding():
  """Masks of 3 classes: truth (rows) against prediction (columns), with IGNORE pixels and a
  padded (weight 0) example that must count nowhere."""
  from tasks import IGNORE  # pylint: disable=import-outside-toplevel
  from tasks import metrics  # pylint: disable=import-outside-toplevel
  truth = np.array([[0, 0, 0, 1], [1, 1, 2, IGNORE]])
  predicted = np.array([[0, 0, 1, 1], [1, 2, 2, 0]])
  confusion = metrics.label_confusion_matrix(truth, predicted, 3).numpy()
  padded = metrics.label_confusion_matrix(np.zeros((2, 4)), np.ones((2, 4)), 3,
                                          weights=np.zeros((2, 4))).numpy()
  results = metrics.summarize(0.0, 1.0, confusion + padded, ('a', 'b', 'c'))
  # By hand: class a: tp 2, truth 3, predicted 2; b: tp 2, truth 3, predicted 3; c: tp 1, 1, 2.
  expected = {'iou/a': 2 / 3, 'iou/b': 2 / 4, 'iou/c': 1 / 2,
              'dice/a': 4 / 5, 'dice/b': 4 / 6, 'dice/c': 2 / 3,
              'precision/a': 2 / 2, 'precision/b': 2 / 3, 'precision/c': 1 / 2,
              'recall/a': 2 / 3, 'recall/b': 2 / 3, 'recall/c': 1 / 1, 'pixel_accuracy': 5 / 7}
  for key, value in expected.items():
    np.testing.assert_allclose(results[key], value, err_msg=key)
  for name in ('iou', 'dice', 'precision', 'recall'):
    np.testing.assert_allclose(results[f'mean_{name}'],
                               np.mean([expected[f'{name}/{c}'] for c in 'abc']))
  # Dice is 2 IoU / (1 + IoU) per class, and a class absent from both is left out of the means.
  for c in 'abc':
    np.testing.assert_allclose(results[f'dice/{c}'],
                               2 * results[f'iou/{c}'] / (1 + results[f'iou/{c}']))
  absent = metrics.summarize(0.0, 1.0, np.pad(confusion, ((0, 1), (0, 1))), tuple('abcd'))
  assert absent['dice/d'] == 0 and absent['mean_dice'] == results['mean_dice']
  assert metrics.line(results, 'val').startswith('val loss 0.0000 pixel_accuracy 0.7143 '
                                                 'mean_iou 0.5556 mean_dice')


def _case(seed=0, ignore=True):
  """Labels [2, 6, 5, 1] of 3 classes (a corner IGNORE'd) and softmax probabilities."""
  from tasks import IGNORE  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 3, (2, 6, 5, 1)).astype(np.int64)
  if ignore:
    labels[:, :2, :2] = IGNORE
  probabilities = tf.nn.softmax(rng.normal(size=(2, 6, 5, 3)).astype(np.float32) * 2).numpy()
  return labels, probabilities


def _loss(labels, probabilities, terms, class_weights=None, **fields):
  spec = losses.LossSpec(terms=tuple((t, 1.0) for t in terms.split('+')), **fields)
  return losses.per_example_loss(tf.constant(labels), tf.constant(probabilities), spec,
                                 class_weights).numpy()


def _soft_counts(labels, probabilities):
  """Per example and class: true positives, false positives, false negatives over the valid
  pixels, by numpy."""
  valid = (labels[..., 0] != 255)[..., None]
  truth = np.eye(3)[np.where(valid[..., 0], labels[..., 0], 0)] * valid
  p = probabilities * valid
  return ((truth * p).sum((1, 2)), ((1 - truth) * p).sum((1, 2)),
          (truth * (1 - p)).sum((1, 2)))


def test_each_pixel_term_equals_its_hand_computation():
  labels, probabilities = _case()
  valid = labels[..., 0] != 255
  picked = np.take_along_axis(probabilities, np.where(valid, labels[..., 0], 0)[..., None],
                              -1)[..., 0]
  cross_entropy = np.where(valid, -np.log(picked), 0).sum((1, 2)) / valid.sum((1, 2))
  np.testing.assert_allclose(_loss(labels, probabilities, 'cross_entropy'), cross_entropy,
                             rtol=1e-5)
  focal = np.where(valid, -(1 - picked) ** 2 * np.log(picked), 0).sum((1, 2)) / valid.sum((1, 2))
  np.testing.assert_allclose(_loss(labels, probabilities, 'focal', focal_gamma=2.0), focal,
                             rtol=1e-5)
  np.testing.assert_allclose(_loss(labels, probabilities, 'focal', focal_gamma=0.0),
                             cross_entropy, rtol=1e-5)  # Gamma 0 is cross-entropy.
  smoothed = (0.9 * -np.log(picked) + 0.1 * -np.log(probabilities).mean(-1))
  np.testing.assert_allclose(_loss(labels, probabilities, 'cross_entropy', label_smoothing=0.1),
                             np.where(valid, smoothed, 0).sum((1, 2)) / valid.sum((1, 2)),
                             rtol=1e-5)
  weights = np.array([1.0, 2.0, 5.0])
  weighted = np.where(valid, -np.log(picked) * weights[np.where(valid, labels[..., 0], 0)], 0)
  np.testing.assert_allclose(_loss(labels, probabilities, 'cross_entropy', tuple(weights)),
                             weighted.sum((1, 2)) / valid.sum((1, 2)), rtol=1e-5)
  # OHEM: the mean over the ceil(30 %) hardest valid pixels of each picture.
  per_pixel = np.where(valid, -np.log(picked), -1).reshape(2, -1)
  kept = np.ceil(0.3 * valid.sum((1, 2))).astype(int)
  hardest = [np.sort(row)[::-1][:k].mean() for row, k in zip(per_pixel, kept)]
  np.testing.assert_allclose(_loss(labels, probabilities, 'cross_entropy', top_k_fraction=0.3),
                             hardest, rtol=1e-5)


def test_each_region_term_equals_its_hand_computation_and_its_special_cases():
  labels, probabilities = _case(1)
  tp, fp, fn = _soft_counts(labels, probabilities)
  dice = 1 - ((tp + 1) / (tp + 0.5 * fp + 0.5 * fn + 1)).mean(-1)
  jaccard = 1 - ((tp + 1) / (tp + fp + fn + 1)).mean(-1)
  tversky = 1 - ((tp + 1) / (tp + 0.3 * fp + 0.7 * fn + 1)).mean(-1)
  np.testing.assert_allclose(_loss(labels, probabilities, 'dice'), dice, rtol=1e-5)
  np.testing.assert_allclose(_loss(labels, probabilities, 'jaccard'), jaccard, rtol=1e-5)
  np.testing.assert_allclose(_loss(labels, probabilities, 'tversky'), tversky, rtol=1e-5)
  np.testing.assert_allclose(  # Tversky with alpha = beta = 0.5 is Dice; 1 and 1 is Jaccard.
      _loss(labels, probabilities, 'tversky', tversky_alpha=0.5, tversky_beta=0.5), dice,
      rtol=1e-6)
  np.testing.assert_allclose(
      _loss(labels, probabilities, 'tversky', tversky_alpha=1.0, tversky_beta=1.0), jaccard,
      rtol=1e-6)
  weights = np.array([1.0, 2.0, 5.0])
  np.testing.assert_allclose(
      _loss(labels, probabilities, 'dice', tuple(weights)),
      1 - (((tp + 1) / (tp + 0.5 * fp + 0.5 * fn + 1)) * weights).sum(-1) / weights.sum(),
      rtol=1e-5)
  np.testing.assert_allclose(_loss(labels, probabilities, 'cross_entropy+dice'),
                             _loss(labels, probabilities, 'cross_entropy') + dice, rtol=1e-5)


def test_lovasz_is_the_jaccard_loss_on_hard_predictions_and_smaller_when_nearly_right():
  """On one-hot predictions the Lovasz extension equals 1 - IoU per class exactly (its
  defining property), averaged over the classes present in the picture."""
  labels, _ = _case(2)
  rng = np.random.default_rng(3)
  predicted = np.where(rng.uniform(size=labels.shape[:3]) < 0.3,
                       rng.integers(0, 3, labels.shape[:3]), labels[..., 0] % 255)
  hard = np.eye(3)[predicted].astype(np.float32)
  valid = labels[..., 0] != 255
  expected = []
  for truth, guess, keep in zip(labels[..., 0], predicted, valid):
    ious = [np.sum((truth == c) & (guess == c) & keep) / np.sum(((truth == c) | (guess == c))
                                                                 & keep)
            for c in range(3) if np.any((truth == c) & keep)]
    expected.append(1 - np.mean(ious))
  np.testing.assert_allclose(_loss(labels, hard, 'lovasz'), expected, rtol=1e-5)
  perfect = np.eye(3)[labels[..., 0] % 255].astype(np.float32)
  np.testing.assert_allclose(_loss(labels, perfect, 'lovasz'), 0.0, atol=1e-6)


def test_loss_config_errors_name_the_fix():
  from errors import ConfigError  # pylint: disable=import-outside-toplevel
  config = small_config(train__loss='cross_entropy+lovasz', train__loss_weights=(1.0, 0.5))
  spec = losses.loss_spec(config.train, tasks.SEGMENTATION)
  assert spec.terms == (('cross_entropy', 1.0), ('lovasz', 0.5))
  for fields, phrase in [
      (dict(train__loss='cross_entropy+focall'), "'focall' is not a loss term; did you mean "
       "'focal'?"),
      (dict(train__loss='dice', train__loss_weights=(1.0, 1.0)), 'gives 2 weights for the 1'),
      (dict(train__loss='dice+dice'), 'names a term twice'),
      (dict(train__label_smoothing=1.0), 'train.label_smoothing=1.0 must be in [0, 1)')]:
    with np.testing.assert_raises_regex(ConfigError, phrase.replace('(', r'\(').replace(
        ')', r'\)').replace('[', r'\[').replace('+', r'\+')):
      losses.loss_spec(small_config(**fields).train, tasks.SEGMENTATION)
  with np.testing.assert_raises_regex(ConfigError, 'dice is a per-pixel term; '
                                      'task=classification'):
    losses.loss_spec(small_config(train__loss='dice').train, tasks.CLASSIFICATION)


def test_classifier_terms_equal_keras_losses():
  rng = np.random.default_rng(5)
  labels = rng.integers(0, 3, (4,))
  softmax = tf.nn.softmax(rng.normal(size=(4, 3)).astype(np.float32)).numpy()
  keras_ce = keras.losses.sparse_categorical_crossentropy(labels, softmax).numpy()
  np.testing.assert_allclose(_loss(labels, softmax, 'cross_entropy'), keras_ce, rtol=1e-5)
  np.testing.assert_allclose(_loss(labels, softmax, 'focal', focal_gamma=0.0), keras_ce,
                             rtol=1e-5)
  sigmoid = rng.uniform(0.05, 0.95, (4, 1)).astype(np.float32)
  binary = labels % 2
  np.testing.assert_allclose(
      _loss(binary, sigmoid, 'cross_entropy'),
      keras.losses.binary_crossentropy(binary[:, None].astype(np.float32), sigmoid).numpy(),
      rtol=1e-5)


def test_cross_entropy_still_pulls_a_saturated_wrong_softmax_back():
  """A softmax that puts ~1e-22 on the true class: clipping the probability before the log
  would leave no gradient and training stuck (a run at a high rate stalled so); the loss reads
  the softmax's logits, so the gradient is the exact p - onehot."""
  logits = tf.Variable(np.array([[[[0.0, 50.0, 0.0]]]], np.float32))
  labels = tf.constant(np.zeros((1, 1, 1, 1), np.int64))
  for terms in ('cross_entropy', 'cross_entropy+dice'):
    with tf.GradientTape() as tape:
      probabilities = keras.activations.softmax(logits)
      loss = losses.per_example_loss(labels, probabilities,
                                     losses.LossSpec(terms=tuple((t, 1.0) for t in
                                                                 terms.split('+'))))
    gradient = tape.gradient(loss, logits).numpy()[0, 0, 0]
    assert gradient[0] < -0.99 and gradient[1] > 0.99, (terms, gradient)
