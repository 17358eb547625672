"""Pictures and lists as users have them: phone photos stored sideways with an EXIF
orientation, list files saved by Windows editors, and a TFDS name that does not exist."""

import os

import numpy as np
import pytest
import tensorflow as tf

from data import decode
from data import exif
from data import files_pairing
from data import files_source
from data import sources
from data import synthetic
from errors import DataError
from inference import loading
from tests import own_data
from tests.conftest import data_spec, small_config
from tests.test_own_data import files_config

# Where the stored picture's first pixel of its first row, and its last, are seen upright,
# for each EXIF orientation (the EXIF spec's row 0 / column 0 table).
CORNERS = {1: ('top-left', 'top-right'), 2: ('top-right', 'top-left'),
           3: ('bottom-right', 'bottom-left'), 4: ('bottom-left', 'bottom-right'),
           5: ('top-left', 'bottom-left'), 6: ('top-right', 'bottom-right'),
           7: ('bottom-right', 'top-right'), 8: ('bottom-left', 'top-left')}


def _corner(picture: np.ndarray, value: int) -> str:
  (y, x), = np.argwhere(picture == value)
  return (('top' if y == 0 else 'bottom') + '-' + ('left' if x == 0 else 'right'))


@pytest.mark.parametrize('byte_order', ['>', '<'])
def test_each_exif_orientation_is_read_and_turned_as_the_spec_says(byte_order):
  stored = np.zeros((2, 3), np.uint8)
  stored[0, 0], stored[0, -1] = 1, 2
  jpeg = tf.io.encode_jpeg(np.zeros((8, 12, 3), np.uint8)).numpy()
  assert exif.orientation(jpeg) == 1
  for tag, (first, last) in CORNERS.items():
    assert exif.orientation(own_data.with_orientation(jpeg, tag, byte_order)) == tag
    turned = exif.upright(stored, tag)
    assert turned.shape == ((2, 3) if tag <= 4 else (3, 2)), tag
    assert (_corner(turned, 1), _corner(turned, 2)) == (first, last), tag
  assert exif.orientation(tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy()) == 1
  assert exif.orientation(own_data.with_orientation(jpeg, 6)[:30]) == 1  # Truncated: as stored.


def _sideways_set(folder: str) -> dict:
  """own_data.write_set, with each train picture stored as a phone stores a portrait photo held
  upright: turned 90 degrees anticlockwise, tagged 6; the masks are drawn upright."""
  truth = own_data.write_set(folder, 'ids', count=6, size=40, mask_suffix='_label')
  images = os.path.join(folder, 'train', 'images')
  for name in sorted(os.listdir(images))[:3]:
    path = os.path.join(images, name)
    upright = decode.decode_image(tf.io.read_file(path)).numpy()
    stored = np.rot90(upright, 1)  # What the sensor recorded.
    assert stored.shape[:2] != upright.shape[:2]
    jpeg = tf.io.encode_jpeg(np.ascontiguousarray(stored), quality=95).numpy()
    with open(path, 'wb') as f:
      f.write(own_data.with_orientation(jpeg, 6))
  return truth


def test_a_phone_photo_pairs_and_aligns_with_its_upright_mask(tmp_path):
  folder = str(tmp_path / 'phone')
  truth = _sideways_set(folder)
  config = files_config(folder, 'ids')
  _, report = files_source.check(data_spec(config))
  assert not report.has_problems(), report.format()
  builder = sources.prepared_builder(data_spec(config), str(tmp_path))
  seen = 0
  for split in builder.info.splits:
    for example in sources.read_encoded(builder, split):
      picture = decode.decode_image(example['image']).numpy().astype(int)
      classes = truth[example['file_name'].numpy().decode()]
      assert picture.shape[:2] == classes.shape
      disc, square = classes == 1, classes == 2  # Red (220, 40, 40), blue (40, 40, 220).
      assert picture[disc][:, 0].mean() - picture[~disc][:, 0].mean() > 70
      assert picture[square][:, 2].mean() - picture[~square][:, 2].mean() > 70
      seen += 1
  assert seen == len(truth)
  first = sorted(os.listdir(os.path.join(folder, 'train', 'images')))[0]
  shown = loading.read_picture(os.path.join(folder, 'train', 'images', first))
  assert shown.shape[:2] == truth[os.path.splitext(first)[0]].shape  # predict sees it upright.


def test_list_files_with_a_bom_crlf_and_blank_lines_read_as_written(tmp_path):
  folder = str(tmp_path / 'own')
  own_data.write_set(folder, 'binary', count=6, size=32)
  stems = ['train_001', 'train_003', 'train_004']
  list_file = tmp_path / 'train.txt'
  list_file.write_bytes(b'\xef\xbb\xbf' + b'\r\n'.join(s.encode() for s in stems)
                        + b'\r\n\r\n')
  assert files_pairing.read_list(str(list_file), 'data.files.train_list') == stems
  official = synthetic.write_synthetic_pets(str(tmp_path / 'pets'), num_trainval=12,
                                            num_test=4, photo_size=40)
  for name in ('trainval.txt', 'test.txt'):
    path = os.path.join(official, 'annotations', name)
    lines = open(path).read().splitlines()
    with open(path, 'wb') as f:
      f.write(b'\xef\xbb\xbf' + b'\r\n'.join(l.encode() for l in lines) + b'\r\n\r\n')
  config = small_config(data__source='folder', data__folder=official,
                        data__validation_fraction=0.0)
  builder = sources.prepared_builder(data_spec(config), str(tmp_path / 'work'))
  assert {split: info.num_examples for split, info in builder.info.splits.items()} == {
      'train': 12, 'test': 4}


def test_a_tfds_name_that_does_not_exist_is_one_line_with_the_nearest():
  config = small_config(data__source='tfds', data__tfds_name='oxford_pets_iiit')
  with pytest.raises(DataError) as raised:
    sources.prepared_builder(data_spec(config), '/nonexistent')
  message = str(raised.value)
  assert "data.tfds_name='oxford_pets_iiit': TFDS" in message and 'oxford_iiit_pet' in message
  assert '\n' not in message and len(message) < 400
