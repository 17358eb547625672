"""The data sources and the tf.data pipeline: official features, decoding, aligned masks."""

import os

import numpy as np
import pytest
import tensorflow as tf

from data import decode
from data import input_pipeline
from data import sources
from errors import DataError
from tests.conftest import small_config

SAMPLE = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'oxford_pets_sample')


def test_folder_source_has_official_features(synthetic_folder, tmp_path):
  config = small_config(data__source='folder', data__folder=synthetic_folder)
  builder = sources.prepared_builder(config.data, str(tmp_path))
  assert sources.num_examples(builder, 'train') == 48
  assert sources.num_examples(builder, 'test') == 13
  features = builder.info.features
  assert set(features.keys()) == {'image', 'label', 'species', 'file_name',
                                  'segmentation_mask', 'head_bbox'}
  example = next(iter(builder.as_dataset(split='train').take(1)))
  assert example['image'].dtype == tf.uint8 and example['image'].shape[-1] == 3
  assert example['segmentation_mask'].dtype == tf.uint8
  assert example['segmentation_mask'].shape[-1] == 1
  assert example['label'].dtype == tf.int64 and example['species'].dtype == tf.int64
  assert set(np.unique(example['segmentation_mask'].numpy())) <= {1, 2, 3}


def test_decode_by_content_not_extension():
  rgba = np.random.default_rng(0).integers(0, 255, (20, 30, 4), dtype=np.uint8)
  png_bytes = tf.io.encode_png(rgba)  # What the official set stores as Abyssinian_5.jpg.
  image = decode.decode_image(png_bytes)
  assert image.shape == (20, 30, 3)
  np.testing.assert_array_equal(image.numpy(), rgba[..., :3])
  gray = tf.io.encode_jpeg(rgba[..., :1])
  assert decode.decode_image(gray).shape == (20, 30, 3)


def test_masks_hold_only_labels_after_resize():
  trimap = np.random.default_rng(1).integers(1, 4, (37, 53, 1), dtype=np.uint8)
  example = {'image': tf.io.encode_jpeg(np.zeros((37, 53, 3), np.uint8)),
             'segmentation_mask': tf.io.encode_png(trimap)}
  out = input_pipeline.preprocess(example, image_size=24)
  assert out['label'].shape == (24, 24, 1) and out['image'].shape == (24, 24, 3)
  assert set(np.unique(out['label'].numpy())) <= {0, 1, 2}
  assert len(np.unique(out['label'].numpy())) == 3


def test_masks_stay_aligned_with_images_under_augmentation():
  """The image's pixels encode the mask, so any misalignment shows as a disagreement."""
  rng = np.random.default_rng(2)
  blocks = rng.integers(0, 3, (8, 8), dtype=np.uint8)
  mask = np.kron(blocks, np.ones((6, 6), np.uint8))[..., None]  # 48x48 label blocks.
  image = (np.eye(3, dtype=np.uint8)[mask[..., 0]] * 255)  # Class c: channel c at 255.
  example = {'image': tf.constant(image), 'label': tf.constant(mask)}
  flipped_any = False
  for seed in range(20):
    out = input_pipeline.augment(example, tf.constant([seed, 7], tf.int64), flip=True,
                                 min_crop_fraction=0.6)
    got_image, got_mask = out['image'].numpy(), out['label'].numpy()[..., 0]
    assert set(np.unique(got_mask)) <= {0, 1, 2}
    exact = np.isin(got_image, (0, 255)).all(-1)  # Pixels not blended by the bilinear resize.
    assert exact.mean() > 0.5
    np.testing.assert_array_equal(np.argmax(got_image, -1)[exact], got_mask[exact])
    flipped_any |= not np.array_equal(got_mask, mask[..., 0])
  assert flipped_any


def test_color_jitter_changes_lighting_not_geometry():
  """Same seed with and without jitter: identical masks, a different image whose dominant
  channel (the class painted into it) still sits where the mask says."""
  mask = np.kron(np.random.default_rng(3).integers(0, 3, (6, 6), dtype=np.uint8),
                 np.ones((8, 8), np.uint8))[..., None]
  image = (np.eye(3, dtype=np.uint8)[mask[..., 0]] * 200 + 20).astype(np.uint8)
  example = {'image': tf.constant(image), 'label': tf.constant(mask)}
  changed = 0
  for seed in range(10):
    seed = tf.constant([seed, 1], tf.int64)
    plain = input_pipeline.augment(example, seed, True, 0.6, color_jitter=0.0)
    jittered = input_pipeline.augment(example, seed, True, 0.6, color_jitter=0.3)
    np.testing.assert_array_equal(plain['label'].numpy(), jittered['label'].numpy())
    exact = np.isin(plain['image'].numpy(), (20, 220)).all(-1)
    np.testing.assert_array_equal(np.argmax(jittered['image'].numpy(), -1)[exact],
                                  plain['label'].numpy()[..., 0][exact])
    changed += not np.array_equal(plain['image'].numpy(), jittered['image'].numpy())
  assert changed >= 9


def test_augmentation_is_a_function_of_the_seed():
  image = tf.random.stateless_uniform([16, 16, 3], [0, 0], maxval=255, dtype=tf.int32)
  example = {'image': tf.cast(image, tf.uint8), 'label': tf.zeros([16, 16, 1], tf.uint8)}
  a = input_pipeline.augment(example, tf.constant([3, 4], tf.int64), True, 0.5)
  b = input_pipeline.augment(example, tf.constant([3, 4], tf.int64), True, 0.5)
  np.testing.assert_array_equal(a['image'].numpy(), b['image'].numpy())


def test_missing_folder_and_missing_data_are_clear(tmp_path):
  config = small_config(data__source='folder', data__folder=str(tmp_path / 'nowhere'))
  with pytest.raises(DataError, match='is not a directory'):
    sources.prepared_builder(config.data, str(tmp_path))
  (tmp_path / 'half' / 'images').mkdir(parents=True)
  config = small_config(data__source='folder', data__folder=str(tmp_path / 'half'))
  with pytest.raises(DataError, match='lacks annotations/trimaps'):
    sources.prepared_builder(config.data, str(tmp_path))


def test_no_data_offline_names_the_three_ways(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, '_download_host_reachable', lambda timeout_s=5.0: False)
  config = small_config(data__source='tfds', data__data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(DataError) as error:
    sources.prepared_builder(config.data, str(tmp_path))
  message = str(error.value)
  for phrase in ('data.data_dir', 'data.manual_dir', 'data.source=folder',
                 'data.source=synthetic', 'cannot be reached'):
    assert phrase in message


def test_manual_dir_missing_an_archive(tmp_path):
  (tmp_path / 'archives').mkdir()
  (tmp_path / 'archives' / 'images.tar.gz').write_bytes(b'not really')
  config = small_config(data__source='tfds', data__data_dir=str(tmp_path / 'tfds'),
                        data__manual_dir=str(tmp_path / 'archives'))
  with pytest.raises(DataError, match='lacks annotations.tar.gz'):
    sources.prepared_builder(config.data, str(tmp_path))


@pytest.mark.skipif(not os.path.isdir(SAMPLE), reason='../shared/oxford_pets_sample is absent')
def test_real_sample_folder(tmp_path):
  config = small_config(data__source='folder', data__folder=SAMPLE)
  builder = sources.prepared_builder(config.data, str(tmp_path))
  assert sources.num_examples(builder, 'train') == 300
  assert sources.num_examples(builder, 'test') == 102
  ds = input_pipeline.eval_dataset(builder, config.data, global_batch_size=51)
  batches = list(ds)
  assert len(batches) == 2 and all(b['image'].shape == (51, 32, 32, 3) for b in batches)
  batch = batches[0]
  assert set(np.unique(batch['label'].numpy())) == {0, 1, 2}
