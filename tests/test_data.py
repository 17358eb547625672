"""The data sources and the tf.data pipeline: official features, decoding, aligned masks."""

import os

import numpy as np
import pytest
import tensorflow as tf

from data import decode
from data import augment as augment_lib
from data import input_pipeline
from data import builders
from data import sources
from errors import DataError
from tests.conftest import data_spec, small_config

SAMPLE = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'oxford_pets_sample')


def test_folder_source_has_official_features(synthetic_folder, tmp_path):
  config = small_config(data__source='folder', data__folder=synthetic_folder)
  builder = sources.prepared_builder(data_spec(config), str(tmp_path))
  assert sources.num_examples(builder, 'train') == 40
  assert sources.num_examples(builder, 'validation') == 8
  assert sources.num_examples(builder, 'test') == 13
  with pytest.raises(DataError, match=r"Split 'train\[:0\]' of .* holds no examples \(its "
                                      r"splits: .*train 40.*\): set data.train_split"):
    sources.num_examples(builder, 'train[:0]')
  with pytest.raises(DataError, match="Split 'tset' does not fit"):
    sources.num_examples(builder, 'tset')
  features = builder.info.features
  assert set(features.keys()) == {'image', 'label', 'species', 'file_name',
                                  'segmentation_mask', 'head_bbox'}
  example = next(iter(builder.as_dataset(split='train').take(1)))
  assert example['image'].dtype == tf.uint8 and example['image'].shape[-1] == 3
  assert example['segmentation_mask'].dtype == tf.uint8
  assert example['segmentation_mask'].shape[-1] == 1
  assert example['label'].dtype == tf.int64 and example['species'].dtype == tf.int64
  assert set(np.unique(example['segmentation_mask'].numpy())) <= {1, 2, 3}


def _names(builder, split):
  return [os.path.splitext(n.decode())[0] for n in
          builder.as_dataset(split=split).map(lambda ex: ex['file_name']).as_numpy_iterator()]


def test_validation_is_a_fixed_share_of_each_breed_apart_from_training_and_test(
    synthetic_folder, tmp_path):
  """Validation and train partition trainval.txt, each breed gives its share, test.txt stays
  whole; the same pictures are held out whatever the list's order, and evaluation and score
  read validation and test."""
  config = small_config(data__source='folder', data__folder=synthetic_folder,
                        data__validation_fraction=0.25)
  splits = sources.resolve_splits(data_spec(config))
  assert (splits.train, splits.eval, splits.test) == ('train', 'validation', 'test')
  builder = sources.prepared_builder(data_spec(config), str(tmp_path / 'a'))
  train, validation = set(_names(builder, 'train')), set(_names(builder, 'validation'))
  trainval = {line.split()[0] for line in open(
      os.path.join(synthetic_folder, 'annotations', 'trainval.txt'))}
  assert not train & validation and train | validation == trainval
  assert set(_names(builder, 'test')).isdisjoint(trainval)
  by_breed = {b: sum(sources.breed(n) == b for n in validation) for b in ('synthetic_cat',
                                                                          'synthetic_dog')}
  assert by_breed == {'synthetic_cat': 6, 'synthetic_dog': 6}  # 25 % of 24 each.

  lines = open(os.path.join(synthetic_folder, 'annotations', 'trainval.txt')).readlines()
  shuffled = builders.validation_lines(lines[::-1], 0.25)
  assert {line.split()[0] for line in shuffled} == validation
  lone = ['Sphynx_1 33 1 12\n', 'Pug_1 29 2 18\n', 'Pug_2 29 2 18\n']
  held_out = builders.validation_lines(lone, 0.1)  # A lone Sphynx stays in training.
  assert len(held_out) == 1 and held_out[0].startswith('Pug_')

  no_hold_out = small_config(data__source='folder', data__folder=synthetic_folder,
                             data__validation_fraction=0.0)
  assert sources.resolve_splits(data_spec(no_hold_out)).eval == 'test'
  builder = sources.prepared_builder(data_spec(no_hold_out), str(tmp_path / 'a'))
  assert sources.num_examples(builder, 'train') == 48


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
  out = input_pipeline.preprocess(example, image_size=24, mask_lookup=decode.TRIMAP_LOOKUP)
  assert out['label'].shape == (24, 24, 1) and out['image'].shape == (24, 24, 3)
  assert set(np.unique(out['label'].numpy())) <= {0, 1, 2}
  assert len(np.unique(out['label'].numpy())) == 3


STRONG_GEOMETRY = augment_lib.Augmentation(flip=True, min_crop_fraction=0.6,
                                               max_aspect_ratio=1.5)


def _batch_of(image: np.ndarray, mask: np.ndarray, count: int) -> dict:
  return {'image': tf.constant(np.stack([image] * count)),
          'label': tf.constant(np.stack([mask] * count))}


def test_masks_stay_aligned_with_images_under_augmentation():
  """The image's pixels encode the mask, so any misalignment shows as a disagreement; each
  picture of a batch has its own crop and flip."""
  rng = np.random.default_rng(2)
  blocks = rng.integers(0, 3, (8, 8), dtype=np.uint8)
  mask = np.kron(blocks, np.ones((6, 6), np.uint8))[..., None]  # 48x48 label blocks.
  image = (np.eye(3, dtype=np.uint8)[mask[..., 0]] * 255)  # Class c: channel c at 255.
  flipped_any = False
  for seed in range(5):
    out = augment_lib.augment(_batch_of(image, mask, 4), tf.constant([seed, 7], tf.int64),
                                 STRONG_GEOMETRY)
    got_images, got_masks = out['image'].numpy(), out['label'].numpy()[..., 0]
    assert len({m.tobytes() for m in got_masks}) == 4  # Every picture its own draw.
    for got_image, got_mask in zip(got_images, got_masks):
      assert set(np.unique(got_mask)) <= {0, 1, 2}
      exact = np.isin(got_image, (0, 255)).all(-1)  # Pixels not blended by the bilinear resize.
      assert exact.mean() > 0.5
      np.testing.assert_array_equal(np.argmax(got_image, -1)[exact], got_mask[exact])
      flipped_any |= not np.array_equal(got_mask, mask[..., 0])
  assert flipped_any


def test_augmented_batches_keep_their_static_shapes(synthetic_folder, tmp_path):
  """Models built for a fixed side (UpSampling2D, Dense heads) need static shapes, with
  every augmentation on (the blur's reshapes had lost them); pictures leave as uint8."""
  config = small_config(data__source='folder', data__folder=synthetic_folder)
  config.data.augment.update(STRONG_GEOMETRY._replace(
      color_jitter=0.3, hue=0.2, grayscale=0.5, blur=0.5, noise=0.1)._asdict())
  builder = sources.prepared_builder(data_spec(config), str(tmp_path))
  spec = input_pipeline.train_dataset(builder, input_pipeline.pipeline(data_spec(config)), 8,
                                      seed=0, start_step=0).element_spec
  assert spec['image'].shape == (8, 32, 32, 3) and spec['label'].shape == (8, 32, 32, 1)
  assert spec['image'].dtype == tf.uint8  # A quarter of float32's bytes to each device.


def test_no_augmentation_keeps_the_batch():
  image = np.random.default_rng(4).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
  mask = np.random.default_rng(5).integers(0, 3, (3, 16, 16, 1), dtype=np.uint8)
  out = augment_lib.augment({'image': tf.constant(image), 'label': tf.constant(mask)},
                               tf.constant([1, 2], tf.int64), augment_lib.Augmentation())
  np.testing.assert_array_equal(out['image'].numpy(), image)
  np.testing.assert_array_equal(out['label'].numpy(), mask)


LOOKS = {'color_jitter': dict(color_jitter=0.3), 'hue': dict(hue=0.3),
         'grayscale': dict(grayscale=1.0), 'blur': dict(blur=1.0), 'noise': dict(noise=0.2)}


@pytest.mark.parametrize('looks', sorted(LOOKS))
def test_colour_and_texture_change_the_picture_not_the_mask(looks):
  """Same seed with and without the change: identical masks, a different image. Lighting
  jitter keeps each pixel's dominant channel (the class painted into it) where the mask says;
  a grey picture has three equal channels."""
  mask = np.kron(np.random.default_rng(3).integers(0, 3, (6, 6), dtype=np.uint8),
                 np.ones((8, 8), np.uint8))[..., None]
  image = (np.eye(3, dtype=np.uint8)[mask[..., 0]] * 200 + 20).astype(np.uint8)
  batch = _batch_of(image, mask, 5)
  changed = 0
  for seed in range(2):
    seed = tf.constant([seed, 1], tf.int64)
    plain = augment_lib.augment(batch, seed, STRONG_GEOMETRY)
    changed_looks = augment_lib.augment(batch, seed, STRONG_GEOMETRY._replace(**LOOKS[looks]))
    np.testing.assert_array_equal(plain['label'].numpy(), changed_looks['label'].numpy())
    for got, before, labels in zip(changed_looks['image'].numpy(), plain['image'].numpy(),
                                   plain['label'].numpy()[..., 0]):
      if looks == 'color_jitter':
        exact = np.isin(before, (20, 220)).all(-1)
        np.testing.assert_array_equal(np.argmax(got, -1)[exact], labels[exact])
      if looks == 'grayscale':
        assert (got.max(-1) - got.min(-1)).max() <= 1
      changed += np.abs(got.astype(int) - before).mean() > 1.0
  assert changed >= 8


def test_blur_blurs_each_picture_by_its_own_sigma():
  """A lone bright pixel spreads by the sigma given for its picture, the same as blurring
  that picture alone."""
  pixels = np.zeros((3, 15, 15, 3), np.float32)
  pixels[:, 7, 7, :] = 1.0
  sigma = tf.constant([0.5, 1.0, 2.0])
  together = augment_lib.gaussian_blur(tf.constant(pixels), sigma).numpy()
  centres = together[:, 7, 7, 0]
  assert centres[0] > centres[1] > centres[2]
  for k in range(3):
    alone = augment_lib.gaussian_blur(tf.constant(pixels[k:k + 1]), sigma[k:k + 1]).numpy()
    np.testing.assert_allclose(together[k], alone[0], atol=1e-6)
    np.testing.assert_allclose(together[k].sum(), 3.0, rtol=1e-5)  # Light is kept.


def test_augmentation_is_a_function_of_the_seed():
  image = tf.random.stateless_uniform([2, 16, 16, 3], [0, 0], maxval=255, dtype=tf.int32)
  batch = {'image': tf.cast(image, tf.uint8), 'label': tf.zeros([2, 16, 16, 1], tf.uint8)}
  everything = STRONG_GEOMETRY._replace(color_jitter=0.3, hue=0.2, grayscale=0.5, blur=0.5,
                                        noise=0.1)
  a = augment_lib.augment(batch, tf.constant([3, 4], tf.int64), everything)
  b = augment_lib.augment(batch, tf.constant([3, 4], tf.int64), everything)
  c = augment_lib.augment(batch, tf.constant([3, 5], tf.int64), everything)
  np.testing.assert_array_equal(a['image'].numpy(), b['image'].numpy())
  assert not np.array_equal(a['image'].numpy(), c['image'].numpy())


def test_missing_folder_and_missing_data_are_clear(tmp_path):
  config = small_config(data__source='folder', data__folder=str(tmp_path / 'nowhere'))
  with pytest.raises(DataError, match='is not a directory'):
    sources.prepared_builder(data_spec(config), str(tmp_path))
  (tmp_path / 'half' / 'images').mkdir(parents=True)
  config = small_config(data__source='folder', data__folder=str(tmp_path / 'half'))
  with pytest.raises(DataError, match='lacks annotations/trimaps'):
    sources.prepared_builder(data_spec(config), str(tmp_path))


def test_no_data_offline_names_the_three_ways(tmp_path, monkeypatch):
  monkeypatch.setattr(builders, '_download_host_reachable', lambda timeout_s=5.0: False)
  config = small_config(data__source='tfds', data__data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(DataError) as error:
    sources.prepared_builder(data_spec(config), str(tmp_path))
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
    sources.prepared_builder(data_spec(config), str(tmp_path))


@pytest.mark.skipif(not os.path.isdir(SAMPLE), reason='../shared/oxford_pets_sample is absent')
def test_real_sample_folder(tmp_path):
  config = small_config(data__source='folder', data__folder=SAMPLE)
  builder = sources.prepared_builder(data_spec(config), str(tmp_path))
  assert sources.num_examples(builder, 'train') == 255
  assert sources.num_examples(builder, 'validation') == 45  # 15 of each of the 3 breeds.
  assert sources.num_examples(builder, 'test') == 102
  ds = input_pipeline.eval_dataset(builder, input_pipeline.pipeline(data_spec(config)),
                                   global_batch_size=15)
  batches = list(ds)
  assert len(batches) == 3 and all(b['image'].shape == (15, 32, 32, 3) for b in batches)
  batch = batches[0]
  assert set(np.unique(batch['label'].numpy())) == {0, 1, 2}
