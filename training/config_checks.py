"""Config values checked before any data is read, each error naming the field and the fix."""

import difflib
import os

from data import annotations
from data import input_pipeline
from data import masks
from data import sources
from errors import ConfigError
from modeling import models
from records.workdir import field_value
import specs
from tasks import losses
import tasks
from training import optimizers
from training import runtime


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ConfigError(message)


def _choice(value, field: str, choices) -> None:
  """One line naming the choices, and the nearest one to a misspelt value."""
  if value in choices:
    return
  nearest = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
  raise ConfigError(f'{field}={value!r} is not one of {", ".join(choices)}'
                    + (f"; did you mean '{nearest[0]}'?" if nearest else '.'))


def _positive(value, field: str) -> None:
  _require(value is not None and value > 0, f'{field}={value!r} must be a positive number.')


def check_task(config) -> None:
  _choice(config.task, 'task', tuple(tasks.TASKS))


def check_config(config) -> None:
  """Static checks of a config whose fields are known and whose derived fields are filled
  (training/settle.py), before any data is read: names, ranges and combinations."""
  check_task(config)
  _check_names(config)
  _check_ranges(config)
  _check_combinations(config)
  _check_sizes(config)
  _check_own_data(config)
  _check_bands(config.data)
  _check_paths(config)


def _check_names(config) -> None:
  """Every field that picks from a table names an entry of it."""
  _choice(config.data.source, 'data.source', tuple(sources.SOURCES))
  _choice(config.train.optimizer, 'train.optimizer', tuple(optimizers.OPTIMIZERS))
  _choice(config.train.schedule, 'train.schedule', optimizers.SCHEDULES)
  _require(config.train.warmup_steps >= 0, 'train.warmup_steps must be 0 or more.')
  _choice(config.runtime.strategy, 'runtime.strategy', runtime.STRATEGIES)
  _choice(config.runtime.precision, 'runtime.precision', runtime.PRECISIONS)
  _choice(config.runtime.collective, 'runtime.collective', runtime.COLLECTIVES)
  _choice(config.runtime.jit_compile, 'runtime.jit_compile', runtime.JIT_COMPILE_SETTINGS)
  _choice(config.data.service_mode, 'data.service_mode', tuple(input_pipeline.SERVICE_MODES))


def _check_ranges(config) -> None:
  """Numbers inside the range that means something."""
  _require(config.runtime.collective_timeout_s >= 0,
           'runtime.collective_timeout_s must be 0 (no timeout) or more seconds.')
  for field in ('data.shuffle_buffer', 'train.global_batch_size',
                'train.epochs', 'train.steps_per_call', 'train.learning_rate',
                'train.gradient_accumulation_steps',
                'train.checkpoint_every_steps', 'train.max_checkpoints_to_keep',
                'eval.global_batch_size', 'eval.continuous_timeout_s',
                'data.synthetic.num_trainval',
                'data.synthetic.num_test', 'data.synthetic.photo_size'):
    _positive(field_value(config, field), field)
  for field in ('train.steps_per_epoch', 'train.steps'):
    if field_value(config, field) is not None:
      _positive(field_value(config, field), field)
  _require(config.eval.patience >= 0, 'eval.patience must be 0 (never stop early) or more '
           'evaluations.')
  _require(not config.eval.patience or config.eval.every_epochs,
           f'eval.patience={config.eval.patience} counts evaluations in the training loop; '
           'eval.every_epochs=0 makes none: set it to 1 or more, or eval.patience to 0.')
  _require(config.runtime.cpu_devices >= 0, 'runtime.cpu_devices must be 0 (no split) or more.')
  _require(isinstance(config.eval.worst_pictures, int) and config.eval.worst_pictures >= 0,
           f'eval.worst_pictures={config.eval.worst_pictures!r}: how many of the worst test '
           'pictures --mode=score draws, 0 (none) or more.')
  _require(config.eval.every_epochs >= 0, 'eval.every_epochs must be 0 (never in the training '
           'loop: run --mode=continuous_eval beside it) or more.')
  _require(0.0 < config.data.augment.min_crop_fraction <= 1.0,
           'data.augment.min_crop_fraction must be in (0, 1]; 1 turns random crops off.')
  _require(config.model.freeze_encoder_epochs >= 0,
           'model.freeze_encoder_epochs must be 0 (never frozen) or more.')
  _require(0.0 <= config.data.validation_fraction < 1.0,
           'data.validation_fraction must be in [0, 1); 0 evaluates on the test split.')
  _require(0.0 <= config.data.augment.color_jitter < 1.0,
           'data.augment.color_jitter must be in [0, 1); 0 turns colour jitter off.')
  _require(config.data.augment.max_aspect_ratio >= 1.0,
           'data.augment.max_aspect_ratio must be 1 (square crops) or more.')
  _require(0.0 <= config.data.augment.hue <= 0.5,
           'data.augment.hue must be in [0, 0.5] (turns of the colour wheel); 0 turns it off.')
  for field in ('grayscale', 'blur'):
    _require(0.0 <= config.data.augment[field] <= 1.0,
             f'data.augment.{field} is a probability: it must be in [0, 1].')
  _require(0.0 <= config.data.augment.noise <= 1.0,
           'data.augment.noise must be in [0, 1] (a standard deviation of 0-1 pixels).')
  _require(config.train.weight_decay >= 0, 'train.weight_decay must be 0 or more.')
  _require(config.train.global_clipnorm >= 0,
           'train.global_clipnorm must be 0 (no clipping) or a positive norm.')
  _require(0.0 <= config.train.ema_decay < 1.0,
           'train.ema_decay must be in [0, 1): 0 turns the moving average off, 0.999 is usual.')
  _require(len(config.data.class_names) >= 2, 'data.class_names needs at least two classes.')
  _require(config.summaries.num_images >= 0, 'summaries.num_images must be 0 or more.')
  if config.train.loss_upper_bound is not None:
    _positive(config.train.loss_upper_bound, 'train.loss_upper_bound')
  _require(config.train.encoder_lr_multiplier >= 0,
           'train.encoder_lr_multiplier must be 0 (a fixed encoder) or more.')
  _require(config.train.recovery_max_trials >= 0, 'train.recovery_max_trials must be 0 or more.')


def _check_combinations(config) -> None:
  """Fields that must agree with each other, and the model with its input sizes."""
  task = tasks.of(config)
  _require(not config.train.balance_classes
           or task.class_weights_field == 'train.balance_classes',
           f'train.balance_classes weights examples by their class; task={task.name} weighs '
           f'its classes with {task.class_weights_field}: set it to False.')
  _require(not config.model.freeze_encoder_epochs or models.has_encoder(config.model.name),
           f'model.freeze_encoder_epochs={config.model.freeze_encoder_epochs}: model.name='
           f'{config.model.name} has no pretrained encoder to freeze; set it to 0.')
  _require(config.train.encoder_lr_multiplier == 1.0 or models.has_encoder(config.model.name),
           f'train.encoder_lr_multiplier={config.train.encoder_lr_multiplier}: model.name='
           f'{config.model.name} has no encoder to slow down; set it to 1.0.')
  _require(config.train.weight_decay == 0 or config.train.optimizer == 'adamw',
           f'train.weight_decay={config.train.weight_decay} needs train.optimizer=adamw '
           f'(decoupled decay); {config.train.optimizer} takes none.')
  losses.loss_spec(config.train, task)
  _choice(config.eval.best_metric, 'eval.best_metric', task.best_metrics)


def _size(value, field: str, empty_ok: bool = False) -> None:
  """A side or (height, width), each a positive whole number of pixels."""
  if empty_ok and value in ((), [], None):
    return
  pair = (value, value) if isinstance(value, int) else tuple(value) \
      if isinstance(value, (tuple, list)) else ()
  _require(len(pair) == 2 and all(isinstance(v, int) and v > 0 for v in pair),
           f'{field}={value!r} must be a side or (height, width) in whole pixels, e.g. 512 or '
           '(512, 1024).')


def _check_sizes(config) -> None:
  """Picture sizes, crops and windows: each one the model takes, each mode's own fields."""
  data, predict, per_pixel = config.data, config.predict, tasks.of(config).per_pixel
  _choice(data.resize, 'data.resize', ('square', 'none'))
  _choice(predict.mode, 'predict.mode', ('', 'resize', 'slide'))
  _size(data.image_size, 'data.image_size')
  low, high = (tuple(data.augment.scale_range) + (0, 0))[:2]
  _require(len(data.augment.scale_range) == 2 and 0 < low <= high,
           f'data.augment.scale_range={tuple(data.augment.scale_range)} must be (lo, hi) with '
           '0 < lo <= hi, e.g. (0.5, 2.0); (1.0, 1.0) does not scale.')
  on_crops = input_pipeline.on_crops(data)
  _require(on_crops or (low, high) == (1.0, 1.0),
           f'data.augment.scale_range={(low, high)} scales pictures before their crop: it needs '
           "data.resize='none' (crops at the pictures' own resolution); squashed pictures are "
           'cropped with data.augment.min_crop_fraction.')
  _choice(data.crop_sampling, 'data.crop_sampling', ('uniform', 'class_balanced'))
  _require(on_crops or data.crop_sampling == 'uniform', "data.crop_sampling=class_balanced "
           "places crops at the pictures' own resolution: it needs data.resize='none'.")
  _require(isinstance(data.crop_temperature, (int, float)) and data.crop_temperature >= 0,
           f'data.crop_temperature={data.crop_temperature!r} must be 0 or more (0: every class '
           'alike, 1: as its pixels occur).')
  _require(isinstance(data.crop_centred_fraction, (int, float))
           and 0 <= data.crop_centred_fraction <= 1,
           f'data.crop_centred_fraction={data.crop_centred_fraction!r} is a share of the '
           'crops: in [0, 1].')
  if on_crops:
    _require(per_pixel, "data.resize='none' trains segmentation on crops; a classifier "
             "sees whole pictures: use data.resize='square'.")
    _size(tuple(data.crop_size), 'data.crop_size')
    models.check_model(config.model, tuple(data.crop_size), field='data.crop_size')
  else:
    models.check_model(config.model, data.image_size)
  slides = specs.predict_mode(predict.mode, data) == 'slide'
  _require(not slides or per_pixel, 'predict.mode=slide answers every pixel of a picture; '
           "a classifier answers whole pictures: use predict.mode='resize'.")
  _require(not (slides and predict.sizes), f'predict.sizes={tuple(predict.sizes)} are the '
           'sides predict.mode=resize resizes to; a slid window sees the picture at its own '
           'resolution: set predict.scales (e.g. (0.75, 1.0, 1.25)) instead.')
  _require(slides or not predict.scales, f'predict.scales={tuple(predict.scales)} scale the '
           'picture a window slides over: they need predict.mode=slide (resize: predict.sizes).')
  for scale in predict.scales:
    _positive(scale, 'every predict.scales entry')
  for size in predict.sizes:
    _size(size, 'every predict.sizes entry')
    models.check_model(config.model, size, field='every predict.sizes entry')
  for field in ('vectors', 'probabilities'):
    _require(not predict[field] or per_pixel, f'predict.{field} is written beside a mask; a '
             f'classifier answers whole pictures (predictions.csv): set predict.{field}=False.')
  _require(predict.simplify >= 0, f'predict.simplify={predict.simplify}: how far, in pixels, '
           'a simplified outline may stray: 0 or more (0: the pixels\' own edges).')
  _size(tuple(predict.window), 'predict.window', empty_ok=True)
  _size(tuple(predict.stride), 'predict.stride', empty_ok=True)
  if slides and predict.window:
    models.check_model(config.model, tuple(predict.window), field='predict.window')
  if slides and predict.stride:
    window = tuple(predict.window) or input_pipeline.model_input_size(data)
    _require(all(s <= w for s, w in zip(predict.stride, window)),
             f'predict.stride={tuple(predict.stride)} is larger than the window {window}: '
             'pixels between windows would get no answer; use a stride of at most the window.')
  _require(predict.windows_per_call >= 0, 'predict.windows_per_call must be 0 (every window '
           'at once) or more.')


def _check_paths(config) -> None:
  """Folders that must be folders, and what the source and cache need on disk."""
  for field in ('data.data_dir', 'data.manual_dir', 'data.folder', 'data.synthetic.dir'):
    path = field_value(config, field)
    _require(not path or not os.path.exists(path) or os.path.isdir(path),
             f'{field}={path!r} is a file: it must name a folder.')
  if config.data.source == 'folder':
    _require(bool(config.data.folder), 'data.source=folder needs --config.data.folder=DIR '
             '(the official extracted layout: images/ and annotations/).')
  if config.data.cache not in ('auto', 'memory', 'none'):
    parent = os.path.dirname(os.path.abspath(config.data.cache))
    _require(os.path.isdir(parent), f'data.cache={config.data.cache!r}: use memory, none, or a '
             f'file path prefix in an existing folder ({parent} does not exist).')


def _check_own_data(config) -> None:
  """Class names, mask encodings, class weights and the files source's folders."""
  data, task = config.data, tasks.of(config)
  num_classes = len(data.class_names)
  _require(len(set(data.class_names)) == num_classes,
           f'data.class_names={tuple(data.class_names)} names a class twice.')
  _require(not task.per_pixel or num_classes <= task.max_classes,
           f'data.class_names has {num_classes} classes; task={task.name} masks hold at most '
           f'{task.max_classes}' + (' (255 marks ignored pixels).' if task.max_classes ==
                                    masks.MAX_CLASSES else '.'))
  if task.classes_overlap:
    _check_overlapping_classes(config)
  label_map = masks.parse_label_map(data.label_map, num_classes)
  if data.ignore_index is not None:
    _require(data.ignore_index >= 0, 'data.ignore_index must be a mask value (0 or more) or '
             'None.')
    _require(label_map is None or data.ignore_index not in label_map,
             f'data.ignore_index={data.ignore_index} is also a key of data.label_map: a value '
             'is either a class or ignored.')
  colors = [tuple(c) for c in data.mask_colors]
  if colors:
    _require(all(len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                 for c in colors),
             f'data.mask_colors={data.mask_colors}: each entry must be (r, g, b) with whole '
             'numbers 0-255.')
    _require(len(colors) == num_classes, f'data.mask_colors has {len(colors)} colours for '
             f'{num_classes} data.class_names: give one (r, g, b) per class, in class order.')
    _require(len(set(colors)) == len(colors), 'data.mask_colors lists a colour twice.')
    _require(not label_map, 'data.label_map and data.mask_colors exclude each other: a mask '
             'holds values (label_map) or colours (mask_colors).')
  weights = config.train.class_weights
  if weights not in ('none', 'auto'):
    _require(isinstance(weights, (tuple, list)) and len(weights) == num_classes and all(
        isinstance(w, (int, float)) and w >= 0 for w in weights),
             f"train.class_weights={weights!r}: use 'none', 'auto' or one weight (0 or more) "
             f'per class ({num_classes}).')
  _require(weights == 'none' or task.class_weights_field == 'train.class_weights',
           f'train.class_weights weights mask pixels; task={task.name} weighs its classes with '
           f'{task.class_weights_field}.')
  if data.source != 'files':
    return
  files = data.files
  _require(bool(files.train_images), 'data.source=files needs data.files.train_images (and, '
           'for segmentation, data.files.train_masks): see BUILD.md "Your own data".')
  for split in ('train', 'validation', 'test'):
    _require(not task.per_pixel or bool(files[f'{split}_images']) == bool(files[f'{split}_masks']),
             f'data.files.{split}_images and data.files.{split}_masks go together: set both '
             'or neither.')
    path = files[f'{split}_images']
    _require(not path or os.path.isdir(path), f'data.files.{split}_images={path!r} is not a '
             'folder.')
    path = files[f'{split}_masks']
    _require(not path or os.path.isdir(path) or annotations.is_annotation_file(path),
             f'data.files.{split}_masks={path!r} is neither a folder (of masks, or of LabelMe '
             'files) nor an annotation file (COCO .json, CVAT for images 1.1 .xml).')
    listed = files[f'{split}_list']
    _require(not listed or os.path.isfile(listed),
             f'data.files.{split}_list={listed!r} is not a file (one stem a line).')
    _require(not listed or bool(files[f'{split}_images']),
             f'data.files.{split}_list needs data.files.{split}_images.')
  drawn = [split for split in ('train', 'validation', 'test')
           if annotations.is_annotations(files[f'{split}_masks'])]
  for field in ('label_map', 'mask_colors', 'ignore_index'):
    _require(not drawn or data[field] in ('', (), None),
             f'data.{field} reads mask pictures; data.files.{drawn[0] if drawn else ""}_masks '
             'names annotations, whose labels go to data.class_names by name: remove '
             f'data.{field} (crowd regions: data.annotations.crowd).')
  drawing = data.annotations
  _choice(drawing.crowd, 'data.annotations.crowd', ('ignore', 'class'))
  _require(isinstance(drawing.line_width, int) and drawing.line_width >= 1,
           f'data.annotations.line_width={drawing.line_width!r}: a whole number of pixels, 1 or '
           'more.')
  unknown = [name for name in drawing.class_priority if name not in data.class_names]
  _require(not unknown, f'data.annotations.class_priority names {unknown[0] if unknown else ""!r}'
           f', which is no class of data.class_names {tuple(data.class_names)}.')
  _require(bool(files.validation_images or data.validation_fraction or files.test_images),
           'data.source=files has nothing to evaluate on: set data.validation_fraction > 0, '
           'or data.files.validation_images / test_images.')


def _check_overlapping_classes(config) -> None:
  """task=multilabel: a files set of 0/1 labels per class (masks or annotations), read as they
  are, and thresholds a probability can be compared with."""
  data, num_classes = config.data, len(config.data.class_names)
  _require(data.source == 'files', f'task={config.task} reads data.source=files (a mask file '
           'of a band per class or of bits, a file per class in class sub-folders, or '
           f'annotations), not data.source={data.source}.')
  _require(not data.label_map and not data.mask_colors,
           f'task={config.task} reads each band (or bit) of a mask as one class, in '
           'data.class_names order: remove data.label_map and data.mask_colors.')
  chosen = config.model.thresholds
  if chosen == 'tune':
    return
  values = (chosen,) if isinstance(chosen, (int, float)) else chosen
  _require(isinstance(values, (tuple, list)) and len(values) in (1, num_classes) and all(
      isinstance(v, (int, float)) and 0 < v < 1 and abs(v * 100 - round(v * 100)) < 1e-6
      for v in values),
           f"model.thresholds={chosen!r}: use 'tune', or a probability in (0, 1) in steps of "
           f'0.01 for every class, or one per class ({num_classes}).')


# What changes a photo's colours only: a raster's bands are not red, green and blue.
_PHOTO_LOOKS = ('hue', 'grayscale')


def _check_bands(data) -> None:
  """data.bands and what goes with it: rasters come from data.source=files, their band numbers
  exist, the photo-only colour augmentations stay off, band_stats has one entry a band."""
  count = data.bands
  _require(isinstance(count, int) and count >= 0, f'data.bands={count!r}: 0 (RGB photos) or '
           'the number of bands every picture has.')
  if not count:
    for field in ('read_bands', 'rgb_bands', 'band_stats', 'augment.jitter_bands'):
      _require(not field_value(data, field), f'data.{field} is for pictures with bands: set '
               'data.bands to the number of bands the model takes.')
    _require(data.nodata is None, 'data.nodata is for pictures with bands: set data.bands.')
    return
  _require(data.source == 'files', f'data.bands={count} reads rasters from your own folders: '
           f'set data.source=files (data.source={data.source} holds photos).')
  read = tuple(data.read_bands)
  _require(not read or (len(read) == count and all(isinstance(b, int) and b >= 1 for b in read)),
           f'data.read_bands={read}: give data.bands={count} band numbers, each from 1 (as '
           'GDAL numbers them), or () to read every band.')
  rgb = tuple(data.rgb_bands)
  _require(not rgb or (len(rgb) == 3 and all(isinstance(b, int) and 1 <= b <= count
                                             for b in rgb)),
           f'data.rgb_bands={rgb}: give three band numbers from 1 to data.bands={count} (among '
           'the bands read), or () for the first three.')
  stats = tuple(tuple(row) for row in data.band_stats)
  _require(not stats or (len(stats) == 2 and all(len(row) == count for row in stats)
                         and all(s > 0 for s in stats[1])),
           f'data.band_stats: give ((mean, ...), (std, ...)) with {count} values each (every '
           'std above 0), or () for the training split\'s own.')
  jitter = tuple(data.augment.jitter_bands)
  _require(all(isinstance(b, int) and 1 <= b <= count for b in jitter),
           f'data.augment.jitter_bands={jitter}: give band numbers from 1 to data.bands={count} '
           '(among the bands read), or () for data.rgb_bands.')
  for field in _PHOTO_LOOKS:
    _require(not data.augment[field], f'data.augment.{field} changes a photo\'s colours; '
             f'with data.bands={count} set it to 0 (color_jitter changes the bands of '
             'data.augment.jitter_bands; flips, crops, scales, blur and noise work on every band).')


def check_batch_divides(global_batch_size: int, num_replicas: int, field: str) -> None:
  example = max(1, global_batch_size // num_replicas) * num_replicas
  _require(global_batch_size % num_replicas == 0,
           f'{field}={global_batch_size} does not divide across {num_replicas} replicas: use a '
           f'multiple of {num_replicas} (for example {example}).')
