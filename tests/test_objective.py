"""What the optimizer minimises: the soft-Jaccard term and decoupled weight decay."""

import keras
import numpy as np
import tensorflow as tf

from tests.conftest import small_config
from training import losses
from training import trainer as trainer_lib


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
  perfect = losses.soft_jaccard_loss(mask, _one_hot_prediction(mask))
  assert float(perfect[0]) < 0.02

  def cost(prediction, jaccard_weight):
    return float(losses.per_example_loss(labels, _one_hot_prediction(prediction),
                                          jaccard_weight)[0])
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
  optimizer = trainer_lib.make_optimizer(config.train, 'float32')
  optimizer.apply([tf.zeros_like(v) for v in model.trainable_variables],
                  model.trainable_variables)
  after = {v.path: v.numpy() for v in model.trainable_variables}
  np.testing.assert_allclose(after['conv/kernel'], before['conv/kernel'] * (1 - 0.1 * 0.5),
                             rtol=1e-5)
  for path in ('conv/bias', 'bn/gamma', 'bn/beta'):
    np.testing.assert_array_equal(after[path], before[path])
