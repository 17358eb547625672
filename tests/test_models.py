"""The model library: the book's parameter counts and float32 outputs under mixed precision."""

import pytest
import tensorflow as tf

from errors import ConfigError
from modeling import models
from tests.conftest import small_config


def test_book_segmentation_model_has_the_books_parameter_count():
  model = models.build_model(small_config().model, image_size=200, num_classes=3)
  assert model.count_params() == 2_880_643
  assert model.output_shape == (None, 200, 200, 3)


def test_unknown_model_name_lists_the_registered_ones():
  config = small_config(model__name='unet9000')
  with pytest.raises(ConfigError, match="Unknown model.name='unet9000'; registered models: "
                                        'book_segmentation'):
    models.build_model(config.model, 32, 3)


def test_policy_does_not_leak_out_of_the_build():
  import keras
  models.build_model(small_config().model, 32, 3, 'mixed_bfloat16')
  assert keras.config.dtype_policy().name == 'float32'
  model = models.build_model(small_config().model, 32, 3, 'mixed_bfloat16')
  assert model(tf.zeros([1, 32, 32, 3])).dtype == tf.float32
