"""A user's own data (data.source=files): every mask encoding prepared pixel for pixel, ignored
pixels counting nowhere, planted problems named by check_data, and runs on two and three
classes."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from data import data_report
from data import decode
from data import files_pairing
from data import files_source
from data import masks
from data import sources
from errors import DataError
import tasks
from tests import own_data
from tests.conftest import data_spec, main_in_process, small_config
from tasks import losses
from tasks import metrics

ENCODINGS = {  # encoding -> config fields that read it
    'binary': dict(label_map='0:0,255:1', class_names=('background', 'object')),
    'palette': dict(ignore_index=255, class_names=('background', 'disc', 'square')),
    'colors': dict(mask_colors=own_data.CLASS_COLORS, class_names=('background', 'disc',
                                                                  'square')),
    'void': dict(ignore_index=11, class_names=('background', 'disc', 'square')),
    'ids': dict(class_names=('background', 'disc', 'square')),
}
SUFFIX = dict(mask_suffix='_label')  # The 'ids' set: a.jpg pairs with a_label.png.


def files_config(folder: str, encoding: str, **overrides):
  fields = {f'data__{field}': value for field, value in ENCODINGS[encoding].items()}
  for split in ('train', 'test'):
    fields[f'data__files__{split}_images'] = os.path.join(folder, split, 'images')
    fields[f'data__files__{split}_masks'] = os.path.join(folder, split, 'masks')
  if encoding == 'ids':
    fields['data__files__mask_suffix'] = SUFFIX['mask_suffix']
  return small_config(data__source='files', **{**fields, **overrides})


@pytest.fixture(scope='module')
def own_sets(tmp_path_factory):
  """{encoding: (folder, {stem: expected class ids})} of small sets in each encoding."""
  root = tmp_path_factory.mktemp('own')
  sets = {}
  for encoding in ENCODINGS:
    folder = str(root / encoding)
    sets[encoding] = folder, own_data.write_set(
        folder, encoding, count=24, seed=len(sets),
        **(dict(mask_suffix=SUFFIX['mask_suffix']) if encoding == 'ids' else {}))
  return sets


@pytest.mark.parametrize('encoding', list(ENCODINGS))
def test_prepared_masks_equal_the_expected_class_ids(own_sets, encoding, tmp_path, monkeypatch):
  """Whole, and in the strips of rows a crop decodes (strips of 16 rows here: several a mask,
  the last shorter)."""
  monkeypatch.setattr(decode, 'MASK_STRIP_ROWS', 16)
  folder, truth = own_sets[encoding]
  config = files_config(folder, encoding)
  builder = sources.prepared_builder(data_spec(config), str(tmp_path))
  seen = 0
  for split in builder.info.splits:
    for example in sources.read_encoded(builder, split):
      expected = truth[example['file_name'].numpy().decode()]
      mask = decode.decode_mask(example['segmentation_mask']).numpy()[..., 0]
      np.testing.assert_array_equal(mask, expected)
      strips = example[decode.MASK_STRIPS_FEATURE]
      assert len(strips) == -(-expected.shape[0] // 16) > 1
      for top, rows in ((0, expected.shape[0]), (5, 20), (16, 16), (expected.shape[0] - 3, 3)):
        np.testing.assert_array_equal(
            decode.decode_mask_rows(strips, top, rows).numpy()[..., 0], expected[top:top + rows])
      seen += 1
  assert seen == len(truth)  # Every pair, once, across train / validation / test.
  report = files_source.stored_report(builder)
  if encoding == 'colors':  # Blended edges: counted as ignored, and drawn in the table's colours.
    assert report.splits['train'].ignore_pixels > 0 and report.splits['train'].off_table
    assert report.class_colors == [list(c) for c in own_data.CLASS_COLORS]
  if encoding == 'palette':  # The data's own palette colours the overlays.
    assert report.class_colors == own_data.voc_palette()[:3].tolist()


def test_palette_indices_are_read_even_where_colours_repeat():
  indices = np.arange(12, dtype=np.uint8).reshape(3, 4) % 5
  palette = np.zeros((5, 3), np.uint8)  # Every entry the same colour.
  raw = masks.read_mask(own_data.palette_png(indices, palette))
  np.testing.assert_array_equal(raw.values, indices)
  assert raw.palette.shape == (5, 3)


def test_a_second_run_reuses_the_prepared_set_and_a_changed_folder_is_prepared_anew(
    tmp_path):
  folder = str(tmp_path / 'data')
  own_data.write_set(folder, 'binary', count=6)
  config = files_config(folder, 'binary')
  first = sources.prepared_builder(data_spec(config), str(tmp_path / 'w'))
  report = os.path.join(first.data_dir_root, files_source.REPORT_FILE)
  written = os.path.getmtime(report)
  again = sources.prepared_builder(data_spec(config), str(tmp_path / 'w'))
  assert again.data_dir_root == first.data_dir_root and os.path.getmtime(report) == written
  own_data.write_set(str(tmp_path / 'more'), 'binary', count=3, seed=5)
  os.replace(str(tmp_path / 'more' / 'train' / 'images' / 'train_000.jpg'),
             os.path.join(folder, 'train', 'images', 'train_100.jpg'))
  os.replace(str(tmp_path / 'more' / 'train' / 'masks' / 'train_000.png'),
             os.path.join(folder, 'train', 'masks', 'train_100.png'))
  changed = sources.prepared_builder(data_spec(config), str(tmp_path / 'w'))
  assert changed.data_dir_root != first.data_dir_root
  assert sum(changed.info.splits[s].num_examples for s in changed.info.splits) == \
      sum(first.info.splits[s].num_examples for s in first.info.splits) + 1


def test_the_validation_hold_out_is_fixed_by_each_stem():
  stems = [f'img_{i}' for i in range(400)]
  held = {s for s in stems if files_pairing.is_held_out(s, 0.15)}
  assert 30 < len(held) < 90
  more = {s for s in stems + [f'new_{i}' for i in range(100)]
          if files_pairing.is_held_out(s, 0.15)}
  assert held <= more  # Adding pictures moves none of the others.


def _ignore_case():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, (2, 8, 8, 1)).astype(np.uint8)
  labels[:, :2] = masks.IGNORE
  probabilities = tf.nn.softmax(rng.normal(size=(2, 8, 8, 3)).astype(np.float32))
  changed = probabilities.numpy().copy()
  changed[:, :2] = tf.nn.softmax(rng.normal(size=(2, 2, 8, 3)).astype(np.float32) * 5)
  return labels, probabilities, tf.constant(changed)


def test_predictions_on_ignored_pixels_change_neither_loss_nor_any_metric():
  labels, probabilities, changed = _ignore_case()
  for weights in (None, (1.0, 2.0, 5.0)):
    for term in losses.TERMS:
      for top_k in (1.0, 0.3):
        spec = losses.LossSpec(terms=((term, 1.0),), top_k_fraction=top_k)
        np.testing.assert_allclose(
            losses.per_example_loss(labels, probabilities, spec, weights),
            losses.per_example_loss(labels, changed, spec, weights), rtol=1e-6,
            err_msg=f'{term} top_k {top_k}')
  confusion = metrics.confusion_matrix(labels, probabilities, 3, tf.ones([2]))
  np.testing.assert_array_equal(confusion, metrics.confusion_matrix(labels, changed, 3,
                                                                    tf.ones([2])))
  assert float(tf.reduce_sum(confusion)) == 2 * 6 * 8  # Ignored pixels count nowhere.
  names = ('a', 'b', 'c')
  assert metrics.summarize(0, 1, confusion.numpy(), names) == metrics.summarize(
      0, 1, metrics.confusion_matrix(labels, changed, 3).numpy(), names)
  # ... while a change on counted pixels does change them.
  other = probabilities.numpy().copy()
  other[:, 4:] = other[:, 4:, :, ::-1]
  assert not np.allclose(losses.per_example_loss(labels, probabilities),
                         losses.per_example_loss(labels, tf.constant(other)))


def test_median_frequency_weights():
  weights = masks.median_frequency_weights([800, 100, 100, 0])
  np.testing.assert_allclose(weights, (0.125, 1.0, 1.0, 0.0))


def _planted(tmp_path) -> tuple:
  """A binary 0/255 set (read without a label map) with one of each problem planted."""
  folder = str(tmp_path / 'planted')
  own_data.write_set(folder, 'binary', count=8)
  images, masks_dir = (os.path.join(folder, 'train', part) for part in ('images', 'masks'))
  with open(os.path.join(images, 'train_001.jpg'), 'wb') as f:
    f.write(b'not a picture at all')
  os.remove(os.path.join(masks_dir, 'train_002.png'))
  os.replace(os.path.join(images, 'train_003.jpg'), os.path.join(folder, 'elsewhere.jpg'))
  tf.io.write_file(os.path.join(masks_dir, 'train_004.png'),
                   tf.io.encode_png(np.zeros((5, 7, 1), np.uint8)))
  return folder, {'train_001.jpg': 'cannot be decoded', 'train_002.jpg': 'without a mask',
                  'train_003.png': 'without a picture',
                  'train_004.png': 'of another size', "'0:0,255:1'": 'map to no class'}


def test_check_data_names_each_planted_problem_and_training_stops_on_them(tmp_path, capsys):
  folder, planted = _planted(tmp_path)
  config = files_config(folder, 'binary', data__label_map='')  # 255 maps to no class.
  _, report = files_source.check(data_spec(config))
  text = report.format()
  for name, phrase in planted.items():
    line = next((l for l in text.splitlines() if name in l), '')
    assert phrase in line or phrase in text, (name, text)
  with pytest.raises(DataError, match='nothing was prepared'):
    sources.prepared_builder(data_spec(config), str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w' / 'prepared_data') or not any(
      files_source.FilesDataset(class_names=('a', 'b'), task=tasks.SEGMENTATION,
                                data_dir=str(tmp_path / 'w' / 'prepared_data' / d)).is_prepared()
      for d in os.listdir(tmp_path / 'w' / 'prepared_data'))
  args = ['--config=configs/own_binary.py', f'--workdir={tmp_path}/w2',
          f'--config.data.files.train_images={folder}/train/images',
          f'--config.data.files.train_masks={folder}/train/masks', '--config.data.label_map=']
  status, stderr = main_in_process(capsys, *args, '--mode=check_data')
  assert status == 2, stderr[-2000:]
  report = capsys.readouterr().out
  for name in planted:
    assert name in report, report
  status, stderr = main_in_process(capsys, *args)
  assert status == 2 and 'Traceback' not in stderr
  assert 'train_004.png' in stderr and 'nothing was prepared' in stderr


def test_a_class_that_never_occurs_in_train_is_a_problem(own_sets):
  folder, _ = own_sets['ids']
  config = files_config(folder, 'ids', data__class_names=('background', 'disc', 'square',
                                                          'triangle'))
  _, report = files_source.check(data_spec(config))
  assert report.splits['train'].problems == {'missing_class': ['triangle']}
  assert 'triangle' in report.format()


# Every encoding's prepared masks equal their class ids pixel for pixel (above), so training
# sees class ids and the ignore value whatever the files held: one two-class set (a label map)
# and one three-class set with ignored pixels train.
@pytest.mark.slow
@pytest.mark.parametrize('encoding', ['binary', 'palette'])
def test_own_sets_train_evaluate_predict_and_score_two_and_three_classes(own_sets, encoding,
                                                                          tmp_path):
  from inference import predict, score  # pylint: disable=import-outside-toplevel
  from training import loop  # pylint: disable=import-outside-toplevel
  folder, _ = own_sets[encoding]
  explain = encoding == 'palette'  # Grad-CAM region scores over a mask with ignored pixels.
  config = files_config(folder, encoding, model__name='xception_unet',
                        model__widths=(8, 16, 32, 64), train__optimizer='adam',
                        train__epochs=2, summaries__explain_every_epochs=2 if explain else 0,
                        summaries__explain__num_filters=2,
                        summaries__explain__num_filter_layers=1, train__class_weights='auto')
  workdir = str(tmp_path)
  results = loop.train(config, workdir)
  names = config.data.class_names
  assert results['eval']['num_examples'] >= 1
  assert all(f'iou/{name}' in results['eval'] for name in names)
  scored = score.run(config, workdir)
  with open(os.path.join(workdir, 'score.json')) as f:
    saved = json.load(f)
  assert saved['num_pictures'] == scored['num_pictures'] == 8
  assert all(f'iou/{name}' in saved for name in names)
  written = predict.run(config, workdir, os.path.join(folder, 'test', 'images'), None)
  assert len(written) == 8
  legend = open(os.path.join(workdir, 'predict', 'legend.csv')).read().splitlines()
  assert [line.split(',')[0] for line in legend[1:]] == list(names)
  if encoding == 'palette':  # What TensorBoard's eval run shows: each under its own tag.
    from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=import-outside-toplevel
    events = event_accumulator.EventAccumulator(os.path.join(workdir, 'eval'),
                                                size_guidance={'tensors': 0})
    events.Reload()
    plugins = {tag: events.SummaryMetadata(tag).plugin_data.plugin_name
               for tag in events.Tags()['tensors']}
    assert plugins['confusion_matrix'] == plugins['masks/prediction'] == 'images'
    assert plugins['confusion_table'] == 'text'
    assert {f'iou/{name}' for name in names} <= set(plugins)


@pytest.mark.slow
def test_classification_from_class_folders(tmp_path):
  from inference import score  # pylint: disable=import-outside-toplevel
  from training import loop  # pylint: disable=import-outside-toplevel
  own_data.write_classification_tree(str(tmp_path / 'train'), count=24)
  own_data.write_classification_tree(str(tmp_path / 'test'), count=6, seed=1)
  config = small_config(task='classification', data__source='files', data__label_feature='label',
                        data__class_names=(), model__name='mini_xception', train__epochs=2,
                        summaries__explain_every_epochs=0,
                        data__files__train_images=str(tmp_path / 'train'),
                        data__files__test_images=str(tmp_path / 'test'))
  assert tuple(config.data.class_names) == ('discs', 'squares')
  workdir = str(tmp_path / 'run')
  results = loop.train(config, workdir)
  assert results['eval']['num_examples'] >= 1
  assert score.run(config, workdir)['num_pictures'] == 6
  counted = data_report.DataReport.read(os.path.join(
      sources.prepared_builder(data_spec(config), workdir).data_dir_root, files_source.REPORT_FILE))
  assert counted.splits['test'].class_pixels.tolist() == [3, 3]  # Pictures per class.


def test_check_data_counts_a_prepared_source_and_finds_values_without_a_class(
    synthetic_folder, tmp_path):
  from data import check_data  # pylint: disable=import-outside-toplevel
  config = small_config(data__source='folder', data__folder=synthetic_folder)
  builder = sources.prepared_builder(data_spec(config), str(tmp_path))
  report = check_data.prepared_report(builder, data_spec(config))
  assert not report.has_problems(), report.format()
  assert report.splits['train'].examples == 40 and report.splits['train'].class_pixels.all()
  config.data.label_map = '1:0,2:1'  # The outline's value 3 maps to no class.
  report = check_data.prepared_report(builder, data_spec(config))
  assert 'unmapped' in report.splits['train'].problems
  assert "data.label_map='1:0,2:1,3:2'" in report.format()


def test_a_label_map_can_ignore_values_and_name_every_other_value():
  values = np.array([[7, 8, 3], [0, 8, 26]])
  cityscapes = masks.MaskEncoding(2, masks.parse_label_map('7:0,8:1,*:ignore', 2))
  mapped = masks.map_mask(masks.RawMask(values, None), cityscapes)
  np.testing.assert_array_equal(mapped.classes, [[0, 1, 255], [255, 1, 255]])
  assert not mapped.unmapped  # '*:ignore' names them all.
  zero_is_other = masks.MaskEncoding(2, masks.parse_label_map('0:ignore,7:0,8:1', 2))
  mapped = masks.map_mask(masks.RawMask(values, None), zero_is_other)
  assert sorted(mapped.unmapped) == [3, 26]  # 0 is ignored on purpose; 3 and 26 are not.
  with pytest.raises(Exception, match='whole numbers'):
    masks.parse_label_map('0:0,x:1', 2)


@pytest.mark.slow
def test_any_tfds_set_by_name_with_its_own_feature_names(tmp_path):
  from data import check_data  # pylint: disable=import-outside-toplevel
  from inference import score  # pylint: disable=import-outside-toplevel
  from training import loop  # pylint: disable=import-outside-toplevel
  data_dir = str(tmp_path / 'tfds')
  own_data.TinySegmentation(data_dir=data_dir).download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  config = small_config(data__source='tfds', data__tfds_name='tiny_segmentation',
                        data__data_dir=data_dir, data__download=False,
                        data__image_key='picture', data__mask_key='label_mask',
                        data__ignore_index=255, data__class_names=('background', 'disc',
                                                                   'square'),
                        train__epochs=2, summaries__explain_every_epochs=0)
  builder = sources.prepared_builder(data_spec(config), str(tmp_path))
  report = check_data.prepared_report(builder, data_spec(config))
  assert not report.has_problems(), report.format()
  assert report.splits['train'].ignore_pixels == 24 * 40  # The first row of each mask.
  results = loop.train(config, str(tmp_path / 'run'))
  assert results['eval']['num_examples'] == 6
  assert score.run(config, str(tmp_path / 'run'))['num_pictures'] == 6
  config.data.mask_key = 'segmentation'
  with pytest.raises(DataError, match="data.mask_key='segmentation' is not a feature"):
    sources.prepared_builder(data_spec(config), str(tmp_path))


def test_overlays_carry_a_legend_and_leave_ignored_pixels_uncoloured():
  from interpretability import colormaps  # pylint: disable=import-outside-toplevel
  picture = np.full((20, 240, 3), 90, np.uint8)
  mask = np.zeros((20, 240), np.uint8)
  mask[:, 100:] = masks.IGNORE
  colors = colormaps.class_colors(3, [[10, 200, 30], [200, 10, 30], [5, 5, 250]])
  overlay = colormaps.mask_overlay(picture, mask, colors=colors)
  assert (overlay[:, 100:] == 90).all() and not (overlay[:, :100] == 90).all()
  shown = colormaps.with_legend(overlay, ('grass', 'rose', 'sky'), colors)
  assert shown.shape[0] > 20 and shown.shape[1] == 240
  strip = shown[20:].reshape(-1, 3)
  for color in colors.tolist():  # Every class's swatch, and black text on white.
    assert (strip == color).all(-1).any()
  assert (strip == 0).all(-1).any() and (strip == 255).all(-1).any()


def test_a_class_name_wider_than_the_picture_widens_the_legend_instead_of_being_cut():
  from interpretability import colormaps, font  # pylint: disable=import-outside-toplevel
  names = ('background', 'Staffordshire Bull Terrier')
  pictures = np.full((2, 32, 32, 3), 90, np.uint8)
  shown = colormaps.with_legend(pictures, names, colormaps.class_colors(2))
  assert shown.shape[0] == 2 and shown.shape[2] > font.text_mask(names[1]).shape[1]
  assert (shown[:, :32, :32] == 90).all() and (shown[:, :32, 32:] == 255).all()
  drawn = (shown[0, 32:] == 0).all(-1).sum()  # Every pixel of both names' text, none cut.
  assert drawn == sum(font.text_mask(name).sum() for name in names)


def test_the_confusion_picture_normalises_each_row():
  from interpretability import colormaps  # pylint: disable=import-outside-toplevel
  picture = colormaps.confusion_image(np.array([[30, 0], [5, 5]]), cell=10)
  assert picture.shape == (20, 20, 3)
  np.testing.assert_array_equal(picture[5, 5], [8, 48, 107])  # Row 0: all predicted as 0.
  np.testing.assert_array_equal(picture[5, 15], [255, 255, 255])
  np.testing.assert_array_equal(picture[15, 5], picture[15, 15])  # Row 1: half and half.
  labelled = colormaps.confusion_image(np.array([[30, 0], [5, 5]]), ('cat', 'dog'), cell=10)
  assert labelled.shape[0] > 20 and labelled.shape[1] > 20


def test_a_palette_png_with_a_colour_table_is_read_by_its_colours():
  indices = np.array([[0, 1, 2], [255, 1, 0]], np.uint8)
  raw = masks.read_mask(own_data.palette_png(indices, own_data.voc_palette()))
  table = masks.MaskEncoding(3, colors=((0, 0, 0), (128, 0, 0), (0, 128, 0)))
  mapped = masks.map_mask(raw, table)
  np.testing.assert_array_equal(mapped.classes, [[0, 1, 2], [255, 1, 0]])
  assert list(mapped.off_table) == [masks.color_codes(np.array([224, 224, 192]))]


def test_sixteen_bit_masks_keep_their_values():
  values = np.array([[0, 300], [1000, 7]], np.uint16)[..., None]
  raw = masks.read_mask(tf.io.encode_png(values).numpy())
  np.testing.assert_array_equal(raw.values, values[..., 0])
  encoding = masks.MaskEncoding(2, masks.parse_label_map('300:0,1000:1,*:ignore', 2))
  np.testing.assert_array_equal(masks.map_mask(raw, encoding).classes, [[255, 0], [1, 255]])
