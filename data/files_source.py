"""`data.source = 'files'`: a user's own pictures and masks (or class sub-folders), paired,
split, checked and prepared once into a TFDS data dir that training streams from.

Pictures pair with masks by their stem (the path below the folder, without the extension and
data.files.image_suffix) plus data.files.mask_suffix. Every mask is decoded and mapped to class
ids once, here (see data/masks.py); the prepared set stores class-id PNGs, so a training step
never runs Python. The prepared set's folder is keyed by everything it was made from (the
files' names, sizes and times, the lists, the encoding): a changed folder is prepared anew.
"""

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import time
from typing import NamedTuple

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from data import annotations
from data import data_report
from data import decode
from data import files_pairing
from data import masks as masks_lib
from data import rasters
from errors import DataError, write_failed
import tasks
from tasks import multilabel

REPORT_FILE = 'report.json'
_VERSION = '1.1.0'  # Of the prepared layout: a change here prepares every set anew.


def _stat_signature(splits: dict, data_config) -> str:
  """A key for everything the prepared set is made from."""
  entries = []
  for split, examples in sorted(splits.items()):
    for example in examples:
      for path in (example.image,) + _target_files(example.target):
        if isinstance(path, str):
          stat = os.stat(path)
          entries.append(f'{split}|{example.name}|{path}|{stat.st_size}|{stat.st_mtime_ns}')
        else:
          entries.append(f'{split}|{example.name}|{path}')
  fields = {k: getattr(data_config, k) for k in ('label_map', 'mask_colors', 'ignore_index',
                                                  'class_names', 'validation_fraction')}
  if tasks.of_data(data_config).classes_overlap:  # Other tasks keep their keys.
    fields['task'] = data_config.label_feature
  if data_config.bands:  # Photos keep their keys (and prepared sets) as they were.
    fields.update({k: getattr(data_config, k)
                   for k in ('bands', 'read_bands', 'nodata', 'band_stats')})
  if any(isinstance(e.target, annotations.Annotated) for part in splits.values() for e in part):
    fields['annotations'] = dataclasses.asdict(data_config.annotations)
  text = json.dumps([_VERSION, fields, dataclasses.asdict(data_config.files)], sort_keys=True,
                    default=str)
  return hashlib.sha1('\n'.join([text] + entries).encode()).hexdigest()[:16]


def _target_files(target) -> tuple:
  """The files (or the class index) an example's label comes from."""
  if isinstance(target, annotations.Annotated):
    return (target.source,)
  if isinstance(target, files_pairing.ClassMasks):
    return target.paths
  return (target,)


class ScannedExample(NamedTuple):
  example: files_pairing.Example
  problem: tuple | None  # (kind, detail) when unusable.
  mask_png: bytes | None  # The class-id mask, PNG-encoded, ready to store.
  mapped: masks_lib.MappedMask | None
  palette: np.ndarray | None
  bands: rasters.BandStats | None = None  # A raster's sums over its valid pixels.
  dtype: str = ''  # A raster file's own sample type.
  drawn: annotations.Drawn | None = None  # A mask drawn from annotations: what check_data says.
  mask_strips: list | None = None  # The same mask as decode.encode_mask_strips stores it.


class _Read(NamedTuple):
  picture: np.ndarray | None  # None when unusable.
  problem: tuple | None = None  # (kind, detail)
  bands: rasters.BandStats | None = None  # A raster's sums over its valid pixels.
  dtype: str = ''  # A raster file's own sample type.
  valid: np.ndarray | None = None  # A raster's measured pixels, bool [H, W].


def _read_picture(path: str, bands: rasters.BandSpec | None) -> _Read:
  """A photo upright, or a raster's bands with their sums; or what makes it unusable."""
  if bands is None:
    try:
      return _Read(decode.decode_upright(tf.io.read_file(path).numpy()))
    except (tf.errors.OpError, OSError):
      return _Read(None, ('unreadable', path))
  try:
    raster = rasters.read(path, bands)
  except rasters.BandsError as e:
    return _Read(None, ('bands', str(e)))
  except DataError as e:
    return _Read(None, ('raster', str(e)))
  if bands.nodata is None and np.isnan(raster.pixels).any():
    return _Read(None, ('nan', path))
  valid = rasters.valid_pixels(raster.pixels, bands.nodata)
  tag = raster.nodata_tag
  if tag is not None and not np.isnan(tag) and tag != bands.nodata:
    tagged = np.mean(~rasters.valid_pixels(raster.pixels, tag) & valid)
    if tagged:
      return _Read(None, ('nodata_tag', f'{path} (tag {tag:g}: {tagged:.1%} of its pixels)'))
  stats = rasters.BandStats(bands.count)
  stats.add(raster.pixels, valid)
  return _Read(raster.pixels, None, stats, raster.dtype, valid)


class Drawing(NamedTuple):
  """How masks are drawn from annotations (data.class_names, data.annotations), and read:
  `overlapping` (the task's classes overlap), 0/1 labels per class."""
  class_names: tuple
  crowd: str = 'ignore'
  class_priority: tuple = ()
  line_width: int = 10
  overlapping: bool = False


def drawing(data_config) -> Drawing:
  options = data_config.annotations
  return Drawing(tuple(data_config.class_names), options.crowd, tuple(options.class_priority),
                 options.line_width, tasks.of_data(data_config).classes_overlap)


def scan_example(example: files_pairing.Example, encoding: masks_lib.MaskEncoding,
                 bands: rasters.BandSpec | None = None,
                 draw: Drawing | None = None) -> ScannedExample:
  """Decodes one picture (and its mask) fully: unreadable files, a mask of another size and
  its class ids are all found here, once; a mask from annotations is drawn here, at the
  picture's size. A raster's pixels missing in every band (`nodata`) are ignored in its mask."""
  read = _read_picture(example.image, bands)
  picture = read.picture
  if picture is None:
    return ScannedExample(example, read.problem, None, None, None)
  height, width = picture.shape[:2]
  drawn = None
  if isinstance(example.target, annotations.Annotated):
    target = example.target
    if (target.height, target.width) not in ((None, None), (height, width)):
      return ScannedExample(example, ('size', f'{target.source} says {example.name} is '
                                              f'{target.width}x{target.height}, picture '
                                              f'{width}x{height}'), None, None, None)
    drawn = annotations.draw(target, draw.class_names, height, width, draw.crowd,
                             draw.class_priority, draw.line_width, draw.overlapping)
    mapped = masks_lib.MappedMask(drawn.classes, {}, {}, False)
    if drawn.unknown:
      return ScannedExample(example, ('unknown_label', f'{target.source}: '
                                                       f'{", ".join(drawn.unknown)}'),
                            None, None, None)
    return _scanned_mask(example, mapped, None, read, drawn)
  if draw is not None and draw.overlapping:
    return _scanned_labels(example, encoding, read, (height, width))
  if not isinstance(example.target, str):
    return ScannedExample(example, None, None, None, None, read.bands, read.dtype)
  try:
    with open(example.target, 'rb') as f:
      raw = masks_lib.read_mask(f.read())
  except (tf.errors.OpError, OSError, ValueError, IndexError, DataError):
    return ScannedExample(example, ('unreadable', example.target), None, None, None)
  if raw.values.shape[:2] != (height, width):
    return ScannedExample(example, ('size', f'{example.target} ({raw.values.shape[1]}x'
                                            f'{raw.values.shape[0]}, picture '
                                            f'{width}x{height})'),
                          None, None, None)
  mapped = masks_lib.map_mask(raw, encoding)
  if mapped.is_color and not encoding.colors:
    return ScannedExample(example, ('color', example.target), None, mapped, None)
  if mapped.unmapped:
    return ScannedExample(example, ('unmapped', example.target), None, mapped, None)
  return _scanned_mask(example, mapped, raw.palette, read, drawn)


def _scanned_labels(example, encoding: masks_lib.MaskEncoding, read: _Read,
                    shape: tuple) -> ScannedExample:
  """A multi-label pair read from its mask files: a file of a band per class or of bits, or a
  file per class (files_pairing.ClassMasks)."""
  target = example.target
  try:
    if isinstance(target, files_pairing.ClassMasks):
      found = masks_lib.class_files_mask(target.paths, shape, encoding.ignore_index)
    else:
      with open(target, 'rb') as f:
        values = masks_lib.read_bands(f.read())
      found = (masks_lib.multilabel_mask(values, encoding.num_classes, target,
                                         encoding.ignore_index)
               if values.shape[:2] == shape else masks_lib.MultilabelMask(
                   None, ('size', f'{target} ({values.shape[1]}x{values.shape[0]}, picture '
                                  f'{shape[1]}x{shape[0]})')))
  except (tf.errors.OpError, OSError, ValueError, IndexError, DataError):
    return ScannedExample(example, ('unreadable', str(target)), None, None, None)
  if found.problem:
    return ScannedExample(example, found.problem, None, None, None)
  return _scanned_mask(example, masks_lib.MappedMask(found.labels, {}, {}, False), None, read,
                       None)


def _scanned_mask(example, mapped: masks_lib.MappedMask, palette, read: _Read,
                  drawn: annotations.Drawn | None) -> ScannedExample:
  """A usable pair: its class ids (a raster's unmeasured pixels ignored) as the PNG to store;
  0/1 labels per class as a 16-bit bitmask (tasks/multilabel.py)."""
  if read.valid is not None:
    classes = mapped.classes.copy()
    classes[~read.valid] = masks_lib.IGNORE
    mapped = mapped._replace(classes=classes)
  stored = (mapped.classes[..., None] if mapped.classes.ndim == 2
            else multilabel.pack_bits(mapped.classes)[..., None])
  png = tf.io.encode_png(stored).numpy()
  return ScannedExample(example, None, png, mapped, palette, read.bands, read.dtype, drawn,
                        decode.encode_mask_strips(stored))


def scan(splits: dict, encoding: masks_lib.MaskEncoding, problems: dict, class_names: tuple,
         bands: rasters.BandSpec | None = None,
         draw: Drawing | None = None) -> tuple[dict, data_report.DataReport]:
  """Decodes every example of every split (threads: decoding releases the GIL); returns the
  usable examples' prepared masks ({split: [ScannedExample]}) and the report, with the
  training split's per-band statistics for rasters."""
  report = data_report.DataReport(class_names)
  scanned = {}
  workers = max(2, os.cpu_count() or 2)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for split, examples in splits.items():
      results = list(pool.map(lambda e: scan_example(e, encoding, bands, draw), examples))
      split_report = report.split(split, problems.get(split, {}))
      for result in results:
        split_report.add(result)
      scanned[split] = [r for r in results if r.problem is None]
  if bands is not None:
    report.bands = _band_report(scanned, bands)
    report.check_sample_types([(item.example.image, item.dtype)
                               for items in scanned.values() for item in items])
  report.finish(encoding)
  return scanned, report


def _band_report(scanned: dict, bands: rasters.BandSpec) -> dict:
  """The training split's per-band statistics, and how many files hold each sample type."""
  stats = rasters.BandStats(bands.count)
  for item in scanned.get('train', []):
    stats.merge(item.bands)
  types = collections.Counter(item.dtype for items in scanned.values() for item in items)
  return {**stats.result(), 'dtypes': dict(types)}


class FilesDataset(tfds.core.GeneratorBasedBuilder):
  """A user's examples, prepared: pictures as they were (bytes; rasters as their float32 bands
  with missing values filled by the band means), masks as class-id PNGs, whole and in strips of
  rows (a training crop decodes only the strips its window covers)."""

  VERSION = tfds.core.Version(_VERSION)

  def __init__(self, *, class_names: tuple, task: tasks.Task, scanned: dict | None = None,
               bands: rasters.BandSpec | None = None, fill: list | None = None, **kwargs):
    self._class_names, self._task = tuple(class_names), task
    self._scanned = scanned or {}
    self._bands = bands
    self._fill = fill  # Rasters: each band's mean, in place of its missing values.
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    reader = self._task.stored_mask_reader(len(self._class_names))
    target = ({tasks.MASK_FEATURE: tfds.features.Image(
        shape=(None, None, 1), dtype=getattr(reader, 'dtype', np.uint8)),
               decode.MASK_STRIPS_FEATURE: tfds.features.Tensor(shape=(None,), dtype=np.object_)}
              if self._task.per_pixel else
              {'label': tfds.features.ClassLabel(names=self._class_names)})
    # A raster is stored as a tensor in its own type (rasters.serialize): lossless, decoded in
    # the graph.
    image = tfds.features.Tensor(shape=(), dtype=np.object_) if self._bands else \
        tfds.features.Image()
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'image': image, 'file_name': tfds.features.Text(), **target}))

  def _split_generators(self, dl_manager):
    del dl_manager  # The pictures are local.
    return [tfds.core.SplitGenerator(name=split, gen_kwargs={'split': split})
            for split in self._scanned]

  def _generate_examples(self, split):
    for item in self._scanned[split]:
      if self._bands:
        pixels = rasters.read(item.example.image, self._bands).pixels
        picture = rasters.serialize(rasters.filled(pixels, self._bands.nodata, self._fill),
                                    item.dtype)
      else:
        with open(item.example.image, 'rb') as f:
          picture = decode.upright_bytes(f.read())
      record = {'image': picture, 'file_name': item.example.name}
      if self._task.per_pixel:
        record[tasks.MASK_FEATURE] = item.mask_png
        record[decode.MASK_STRIPS_FEATURE] = item.mask_strips
      else:
        record['label'] = item.example.target
      yield item.example.name, record


def check(data_config, splits: dict | None = None,
          problems: dict | None = None) -> tuple[dict, data_report.DataReport]:
  """Pairs and splits the configured folders (unless given) and scans every example:
  (scanned examples, report)."""
  if splits is None:
    problems = {}
    splits = files_pairing.split_examples(data_config, problems)
  encoding = masks_lib.encoding_from_config(data_config)
  return scan(splits, encoding, problems, data_config.class_names,
              rasters.band_spec(data_config), drawing(data_config))


def _keyed_builder(data_config, data_dir: str) -> tuple:
  """(the builder in the folder keyed by these files and this config, splits, problems)."""
  problems = {}
  splits = files_pairing.split_examples(data_config, problems)
  folder = os.path.join(data_dir, 'files-' + _stat_signature(splits, data_config))
  return (FilesDataset(class_names=data_config.class_names, task=tasks.of_data(data_config),
                       bands=rasters.band_spec(data_config), data_dir=folder), splits, problems)


def is_prepared(builder) -> bool:
  """Prepared completely: the records and, written last, a readable report (a damaged one
  is written again from a new check; the records are reused)."""
  return builder.is_prepared() and stored_report(builder) is not None


def existing_builder(data_config, data_dir: str):
  """The prepared set for this config and these files if there is one, else None; prepares
  nothing (for readers such as predict that only want its report)."""
  builder = _keyed_builder(data_config, data_dir)[0]
  return builder if is_prepared(builder) else None


def prepared_builder(data_config, data_dir: str, prepare
                     ) -> tfds.core.DatasetBuilder:
  """The prepared set for this config and these files, checked and prepared now if it is new.
  `prepare(builder)` runs TFDS's preparation (with the caller's write-failure handling)."""
  builder, splits, problems = _keyed_builder(data_config, data_dir)
  if is_prepared(builder):
    return builder
  folder = builder.data_dir_root
  kwargs = dict(class_names=data_config.class_names, task=tasks.of_data(data_config),
                bands=rasters.band_spec(data_config), data_dir=folder)
  start = time.perf_counter()
  scanned, report = check(data_config, splits, problems)
  if report.has_problems():
    raise DataError('The data cannot be trained on as it is (nothing was prepared):\n'
                    + report.format(data_config.files.mask_suffix))
  logging.info('Checked the data in %.1f s:\n%s', time.perf_counter() - start,
               report.format(data_config.files.mask_suffix))
  fill = band_statistics(data_config, report.bands)[0] if data_config.bands else None
  builder = FilesDataset(scanned=scanned, fill=fill, **kwargs)
  prepare(builder)
  try:
    report.write(os.path.join(folder, REPORT_FILE))
  except OSError as e:
    raise write_failed(e, 'Free disk space or set data.data_dir to a writable folder, then '
                       'rerun; the set is checked again and the prepared records are reused.',
                       f'{folder}/{REPORT_FILE}', DataError) from None
  count = sum(len(v) for v in scanned.values())
  logging.info('Prepared %d examples into %s in %.1f s (%.1f ms per picture).', count, folder,
               time.perf_counter() - start, 1000 * (time.perf_counter() - start) / max(count, 1))
  return builder


def band_statistics(data_config, bands_report: dict) -> tuple[list, list]:
  """(mean, std) per band that a raster model normalises by, and whose mean fills a prepared
  picture's missing values: data.band_stats, else the training split's (`bands_report`, the
  report's `bands`)."""
  if data_config.band_stats:
    mean, std = data_config.band_stats
    return list(mean), list(std)
  return bands_report['mean'], bands_report['std']


def stored_report(builder) -> data_report.DataReport | None:
  """The report written when `builder` (a FilesDataset) was prepared."""
  return data_report.DataReport.read(os.path.join(builder.data_dir_root, REPORT_FILE))
