"""The multi-label task: a 0/1 label per class and pixel, read from a band per class, from
bits or from a file per class (and from annotations, each shape on its own class), lost and
counted per class, predicted at each class's threshold (tuned on validation), in every mode."""

import dataclasses
import json
import os

import numpy as np
import pytest
import rasterio
import tensorflow as tf

from data import files_source
from data import masks
from errors import ConfigError
import tasks
from tasks import IGNORE
from tasks.exclusive import ExclusiveClasses
from tasks import losses
from tasks import multilabel
from tests import own_data
from tests.conftest import main_in_process, small_config

NAMES = own_data.MULTILABEL_CLASSES


def _config(folder: str, **more):
  return small_config(**{**dict(
      task='multilabel', data__source='files', data__class_names=NAMES,
      data__files__train_images=os.path.join(folder, 'train', 'images'),
      data__files__train_masks=os.path.join(folder, 'train', 'masks'),
      data__files__test_images=os.path.join(folder, 'test', 'images'),
      data__files__test_masks=os.path.join(folder, 'test', 'masks'),
      data__validation_fraction=0.25, train__loss='cross_entropy+dice'), **more})


def _stored(scanned: dict) -> dict:
  """{stem: the prepared 0/1 labels} as training reads them back."""
  return {item.example.name: multilabel.Bitmask(len(NAMES)).decode(item.mask_png).numpy()
          for items in scanned.values() for item in items}


@pytest.mark.parametrize('encoding', ['bands', 'bits', 'folders'])
def test_every_multilabel_encoding_is_prepared_as_the_labels_it_holds(tmp_path, encoding):
  truth = own_data.write_multilabel_set(str(tmp_path), encoding, count=6, size=24)
  scanned, report = files_source.check(_config(str(tmp_path)).data)
  stored = _stored(scanned)
  assert sorted(stored) == sorted(truth)
  for name, labels in stored.items():
    np.testing.assert_array_equal(labels, truth[name])
  both = sum(int((truth[n][..., 0] & truth[n][..., 1]).sum()) for n in stored)
  assert both > 0  # The set really overlaps, and the report says how much.
  assert 'pixels two classes share (multi-label): disc/stripe' in report.format()
  assert not report.has_problems(), report.format()


def test_bits_above_the_class_count_and_a_wrong_band_count_are_named_with_their_files(tmp_path):
  own_data.write_multilabel_set(str(tmp_path), 'bits', count=6, size=24)
  masks = os.path.join(tmp_path, 'train', 'masks')
  bad = sorted(os.listdir(masks))
  shapes = [tf.io.decode_png(tf.io.read_file(os.path.join(masks, name))).shape[:2]
            for name in bad]
  tf.io.write_file(os.path.join(masks, bad[0]), tf.io.encode_png(
      np.full(shapes[0] + (1,), 8, np.uint8)))  # Bit 3: a fourth class.
  tf.io.write_file(os.path.join(masks, bad[1]), tf.io.encode_png(
      np.zeros(shapes[1] + (2,), np.uint8)))  # Two bands for three classes.
  text = files_source.check(_config(str(tmp_path)).data)[1].format()
  assert 'bit 3 set' in text and bad[0] in text and 'bit k is class k' in text
  assert f'{bad[1]} (2 bands, 3 classes)' in text and 'one band per class' in text


def test_an_ignore_value_ignores_a_class_pixel_and_a_bitmask_pixel_in_every_class():
  bands = masks.multilabel_mask(np.array([[[7, 0, 255]]]), 3, 'm.png', ignore_index=255)
  np.testing.assert_array_equal(bands.labels, [[[1, 0, IGNORE]]])
  bits = masks.multilabel_mask(np.array([[[5], [255]]]), 3, 'm.png', ignore_index=255).labels
  np.testing.assert_array_equal(bits, [[[1, 0, 1], [IGNORE] * 3]])
  stored = multilabel.pack_bits(bits)[..., None]  # What training reads back.
  np.testing.assert_array_equal(multilabel.unpack_bits(stored, 3), bits)


def test_counts_give_each_class_its_binary_scores_and_add_up_across_batches():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, (4, 8, 8, 3)).astype(np.uint8)
  labels[0, 0, 0, 1] = IGNORE
  probabilities = rng.uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)
  task = tasks.MULTILABEL.settled(_thresholds((0.5, 0.3, 0.7)))
  whole = task.counts(labels, probabilities, 3).numpy()
  halves = task.counts(labels[:2], probabilities[:2], 3) + task.counts(labels[2:],
                                                                       probabilities[2:], 3)
  np.testing.assert_array_equal(whole, halves.numpy())
  results = task.summarize(0.0, 1.0, whole, NAMES)
  for index, (name, threshold) in enumerate(zip(NAMES, (0.5, 0.3, 0.7))):
    truth, predicted = labels[..., index], probabilities[..., index] >= threshold
    counted = truth != IGNORE
    tp = np.sum(predicted & (truth == 1) & counted)
    union = np.sum((predicted | (truth == 1)) & counted)
    assert results[f'iou/{name}'] == pytest.approx(tp / union)
  padded = task.counts(labels, probabilities, 3, weights=tf.constant([1.0, 1, 0, 0]))
  np.testing.assert_array_equal(padded.numpy(), task.counts(labels[:2], probabilities[:2],
                                                            3).numpy())


def _thresholds(value):
  from configs import base  # pylint: disable=import-outside-toplevel
  model = base.get_base_config().model
  model.thresholds = value
  return model


def test_tuned_thresholds_are_each_classes_best_iou_and_say_the_untuned_mean():
  rng = np.random.default_rng(1)
  truth = rng.integers(0, 2, (2, 16, 16, 2)).astype(np.uint8)
  # Class a's true labels score 0.25-0.35, its false ones 0.05-0.15; class b's 0.85-0.95
  # and 0.55-0.65: any threshold between tells them apart, the one nearest 0.5 is chosen.
  probabilities = np.where(truth == 1, [0.3, 0.9], [0.1, 0.6]).astype(np.float32)
  probabilities += rng.uniform(-0.05, 0.05, probabilities.shape).astype(np.float32)
  task = tasks.MULTILABEL.settled(_thresholds('tune'))
  results = task.summarize(0.0, 1.0, task.counts(truth, probabilities, 2).numpy(), ('a', 'b'))
  assert results['threshold/a'] == 0.25 and results['threshold/b'] == 0.65
  assert results['mean_iou'] == pytest.approx(1.0)
  assert results['mean_iou_at_0.5'] < 0.8
  chosen = task.predicting_as(results, ('a', 'b'))
  np.testing.assert_array_equal(chosen.predicted_labels(probabilities).numpy(), truth)


def test_uncertainty_is_0_when_sure_and_1_when_as_unsure_as_can_be():
  sure, unsure = np.array([[0.0, 1.0, 0.0]]), np.full([1, 3], 1 / 3)
  np.testing.assert_allclose(tasks.SEGMENTATION.uncertainty(sure), [0.0], atol=1e-6)
  np.testing.assert_allclose(tasks.SEGMENTATION.uncertainty(unsure), [1.0], atol=1e-6)
  np.testing.assert_allclose(tasks.SEGMENTATION.uncertainty(np.array([[0.5]])), [1.0], atol=1e-6)
  np.testing.assert_allclose(tasks.MULTILABEL.uncertainty(np.array([[0.0, 1.0], [0.5, 0.5]])),
                             [0.0, 1.0], atol=1e-6)
  assert 0 < float(tasks.MULTILABEL.uncertainty(np.array([[0.9, 0.2]]))[0]) < 1


def test_binary_losses_per_class_ignore_the_ignored_labels_and_weigh_classes():
  rng = np.random.default_rng(2)
  labels = rng.integers(0, 2, (2, 6, 6, 3)).astype(np.uint8)
  labels[:, 0] = IGNORE
  probabilities = rng.uniform(0.05, 0.95, (2, 6, 6, 3)).astype(np.float32)
  spec = losses.LossSpec()
  loss = tasks.MULTILABEL.per_example_loss(labels, probabilities, spec).numpy()
  counted = labels != IGNORE
  truth = np.where(counted, labels, 0)
  manual = -(truth * np.log(probabilities) + (1 - truth) * np.log(1 - probabilities))
  expected = (manual * counted).sum((1, 2, 3)) / counted.sum((1, 2, 3))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  changed = probabilities.copy()
  changed[:, 0] = 0.5  # Only ignored labels change.
  np.testing.assert_allclose(tasks.MULTILABEL.per_example_loss(labels, changed, spec), loss,
                             rtol=1e-6)
  weighted = tasks.MULTILABEL.per_example_loss(labels, probabilities, spec, (1.0, 0.0, 0.0))
  only_first = (manual[..., 0] * counted[..., 0]).sum((1, 2)) / counted.sum((1, 2, 3))
  np.testing.assert_allclose(weighted, only_first, rtol=1e-5)
  for term in ('dice', 'jaccard', 'tversky', 'lovasz', 'focal'):
    term_spec = losses.LossSpec(terms=((term, 1.0),))
    perfect = tasks.MULTILABEL.per_example_loss(
        labels, np.where(labels == 1, 1.0, 0.0).astype(np.float32), term_spec).numpy()
    wrong = tasks.MULTILABEL.per_example_loss(
        labels, np.where(labels == 1, 0.0, 1.0).astype(np.float32), term_spec).numpy()
    assert (perfect < 0.05).all() and (wrong > perfect + 0.5).all(), (term, perfect, wrong)


def test_a_multilabel_config_names_what_it_cannot_take(tmp_path):
  own_data.write_multilabel_set(str(tmp_path), 'bands', count=4, size=24)
  with pytest.raises(ConfigError, match='reads data.source=files'):
    small_config(task='multilabel', data__class_names=('a', 'b'))
  with pytest.raises(ConfigError, match='steps of 0.01'):
    _config(str(tmp_path), model__thresholds=0.333)
  with pytest.raises(ConfigError, match='one per class'):
    _config(str(tmp_path), model__thresholds=(0.4, 0.5))
  with pytest.raises(ConfigError, match='remove data.label_map'):
    _config(str(tmp_path), data__label_map='0:0,255:1')
  with pytest.raises(ConfigError, match='at most 15'):
    _config(str(tmp_path), data__class_names=tuple(f'c{k}' for k in range(16)))


def _short_run(config: str, workdir: str, folder: str, widths: str, steps: int, batch: int
               ) -> list:
  """main.py's arguments for a run of `steps` steps of a small Xception U-Net on 32 px."""
  return [f'--config=configs/{config}.py', f'--workdir={workdir}',
          f'--config.data.files.train_images={folder}/train/images',
          f'--config.data.files.train_masks={folder}/train/masks',
          '--config.data.image_size=32', f'--config.model.widths={widths}',
          f'--config.train.steps={steps}', f'--config.train.steps_per_epoch={steps // 2}',
          '--config.train.warmup_steps=1', f'--config.train.global_batch_size={batch}',
          f'--config.eval.global_batch_size={batch}']


@pytest.mark.slow
def test_every_mode_on_a_multilabel_model(tmp_path, capsys):
  """Trains with tuned thresholds, then predicts (a mask per class, aligned with the
  picture), scores (per class, thresholds recorded), exports (masks [N, H, W, classes]
  agreeing with the model) and explains each class."""
  folder = str(tmp_path / 'set')
  truth = own_data.write_multilabel_set(folder, 'folders', count=16, size=32)
  workdir = str(tmp_path / 'run')
  # widths (8, 16) make oneDNN abort in Grad-CAM's gradient (TF 2.21, this CPU).
  args = _short_run('own_multilabel', workdir, folder, '(16,32)', steps=40, batch=8) + [
      f'--config.data.files.test_images={folder}/test/images',
      f'--config.data.files.test_masks={folder}/test/masks',
      '--config.summaries.explain_every_epochs=2', '--config.export.check_pictures=4',
      '--config.summaries.explain.num_filters=2']
  assert main_in_process(capsys, *args)[0] == 0
  with open(os.path.join(workdir, 'best_model.json')) as f:
    best = json.load(f)
  thresholds = [best[f'threshold/{name}'] for name in NAMES]
  assert best['mean_iou'] >= best['mean_iou_at_0.5']
  assert main_in_process(capsys, *args, '--mode=predict', '--config.predict.uncertainty=True',
                         f'--images={folder}/test/images')[0] == 0
  stem = sorted(n for n in truth if n.startswith('test'))[0]
  unsure = tf.io.decode_png(tf.io.read_file(os.path.join(
      workdir, 'predict', f'{stem}_uncertainty.png'))).numpy()
  assert unsure.shape == truth[stem].shape[:2] + (3,)
  for index, name in enumerate(NAMES):
    mask = tf.io.decode_png(tf.io.read_file(os.path.join(
        workdir, 'predict', f'{stem}_mask_{name}.png'))).numpy()[..., 0]
    assert mask.shape == truth[stem].shape[:2] and set(np.unique(mask)) <= {0, 1}
    if name != 'square':  # Large enough to be learnt in 40 steps.
      overlap = np.sum(mask & truth[stem][..., index]) / max(np.sum(
          mask | truth[stem][..., index]), 1)
      assert overlap > 0.3, (name, overlap)
  assert main_in_process(capsys, *args, '--mode=score')[0] == 0
  with open(os.path.join(workdir, 'score.json')) as f:
    score = json.load(f)
  assert score['thresholds'] == thresholds and {f'iou/{n}' for n in NAMES} <= set(score)
  assert main_in_process(capsys, *args, '--mode=export')[0] == 0
  with open(os.path.join(workdir, 'export', 'saved_model', 'export.json')) as f:
    record = json.load(f)
  assert record['thresholds'] == thresholds and record['check']['passed']
  served = tf.saved_model.load(os.path.join(workdir, 'export', 'saved_model')).signatures
  answer = served['serve'](pictures=tf.zeros([1, 40, 30, 3], tf.uint8))
  assert answer['masks'].shape == (1, 40, 30, 3) and answer['masks'].dtype == tf.uint8
  # Through the exported file: each class's regions (overlapping) and probabilities.
  out = str(tmp_path / 'served')
  assert main_in_process(capsys, *args, '--mode=predict', f'--images={folder}/test/images',
                         f'--config.predict.artifact={workdir}/export/saved_model',
                         '--config.predict.vectors=True', '--config.predict.probabilities=True',
                         '--config.predict.simplify=0', f'--output={out}')[0] == 0
  with rasterio.open(os.path.join(out, f'{stem}_probabilities.tif')) as odds:
    answered = np.moveaxis(odds.read(), 0, -1)
  with open(os.path.join(out, f'{stem}_mask.geojson')) as f:
    regions = json.load(f)['features']
  for index, name in enumerate(NAMES):
    mask = tf.io.decode_png(tf.io.read_file(os.path.join(
        out, f'{stem}_mask_{name}.png'))).numpy()[..., 0]
    assert np.mean(mask == (answered[..., index] > thresholds[index])) > 0.99, name
    assert sum(r['properties']['pixels'] for r in regions
               if r['properties']['class'] == name) == mask.sum(), name
  assert main_in_process(capsys, *args, '--mode=explain')[0] == 0
  explained = os.listdir(os.path.join(workdir, 'explain'))
  assert all(any(name in f for f in explained) for name in NAMES), explained


@dataclasses.dataclass(frozen=True)
class Foreground(ExclusiveClasses):
  """A made-up fourth task: segmentation summed up by how well it finds anything that is not
  class 0 (its own headline metric)."""

  def summarize(self, loss_sum, num_examples, counts, class_names) -> dict:
    results = super().summarize(loss_sum, num_examples, counts, class_names)
    counts = np.asarray(counts, np.float64)
    found = counts[1:, 1:].sum()
    results['foreground_iou'] = found / max(counts[1:].sum() + counts[:, 1:].sum() - found, 1.0)
    return results


FOREGROUND = Foreground(
    name='foreground', per_pixel=True, label_feature='foreground_mask',
    headline='foreground_iou', best_metrics=('loss', 'foreground_iou'),
    class_weights_field='train.class_weights', outputs=('masks', 'probabilities'))


@pytest.mark.slow
def test_a_fourth_task_trains_predicts_and_exports_without_a_product_edit(tmp_path, capsys,
                                                                          monkeypatch):
  monkeypatch.setitem(tasks.TASKS, FOREGROUND.name, FOREGROUND)
  folder = str(tmp_path / 'set')
  own_data.write_set(folder, 'ids', count=12, size=32)
  workdir = str(tmp_path / 'run')
  args = _short_run('own_data', workdir, folder, '(8,16)', steps=10, batch=4) + [
      '--config.task=foreground', "--config.data.class_names=('background','disc','square')",
      '--config.eval.best_metric=foreground_iou', '--config.summaries.explain_every_epochs=0',
      '--config.export.check_pictures=2']
  assert main_in_process(capsys, *args)[0] == 0
  with open(os.path.join(workdir, 'best_model.json')) as f:
    assert 0.0 <= json.load(f)['foreground_iou'] <= 1.0
  assert main_in_process(capsys, *args, '--mode=predict', '--config.predict.uncertainty=True',
                         f'--images={folder}/test/images')[0] == 0
  written = os.listdir(os.path.join(workdir, 'predict'))
  assert any(name.endswith('_mask.png') for name in written)
  assert any(name.endswith('_uncertainty.png') for name in written)
  assert main_in_process(capsys, *args, '--mode=export')[0] == 0
  with open(os.path.join(workdir, 'export', 'saved_model', 'export.json')) as f:
    assert json.load(f)['check']['metric'] == 'foreground_iou'
