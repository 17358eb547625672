"""The tf.data pipeline: decode by content, resize, cache, shuffle, batch, augment, prefetch.

Pure functions on tensors (`preprocess`; `augment` is in data/augment.py, native-resolution
crops in data/crops.py) plus the two dataset builders the trainer hands to
`strategy.distribute_datasets_from_function`. The streams read a `Pipeline`, what they need of
the data section resolved once by `pipeline`, not the section itself.
Pictures leave as uint8 batches: the host copies a quarter of float32's bytes to each device,
and the training step casts them there.
"""

import dataclasses
import hashlib
import json
import math
from typing import NamedTuple

import tensorflow as tf

from data import augment as augment_lib
from data import crops
from data import resize as resize_lib
from data import sources
from data.decode import decode_mask, decode_picture
from sizes import sides
import tasks
from tasks import MASK_FEATURE


# A function for tf.data or tf.function traced as written, not rewritten by autograph first:
# the pipeline's and the steps' functions use TensorFlow's control flow, never Python's on
# tensors, and autograph's rewrite of them and all they call cost 1.5 s of a fresh process.
as_written = tf.autograph.experimental.do_not_convert


def preprocess(example: dict, image_size, label_feature: str = MASK_FEATURE,
               mask_lookup=None, bands: int = 0) -> dict:
  """Decoded image resized to `image_size` (a side or (height, width); bilinear, antialiased)
  and its label, or with `image_size` None the image at its own resolution.

  The label is the mask as class ids (values through `mask_lookup`, see decode_mask; resized
  with nearest neighbour: no invented labels) or, for classification, the integer feature
  `label_feature` (e.g. species). Photos stay uint8; rasters of `bands` bands float32.
  """
  image = decode_picture(example['image'], bands)
  if image_size is not None:
    image = resize_lib.as_stored(resize_lib.resize_pictures(image[None], image_size)[0], bands)
  if tasks.of_label(label_feature).per_pixel:
    mask = decode_mask(example[MASK_FEATURE], mask_lookup)
    if image_size is not None:
      mask = tf.image.resize(mask, sides(image_size), method='nearest')
    return {'image': image, 'label': tf.cast(mask, tf.uint8)}
  return {'image': image, 'label': tf.cast(example[label_feature], tf.int32)}


def on_crops(data_config) -> bool:
  """Training on crops of the pictures at their own resolution (data.resize='none'): evaluation
  then slides a window over each whole picture, one picture per replica at a time."""
  return data_config.resize == 'none'


def model_input_size(data_config) -> tuple[int, int]:
  """(height, width) the model is built at: the crop when training on crops, else the size
  every picture is resized to."""
  return sides(tuple(data_config.crop_size) if on_crops(data_config) else data_config.image_size)


# Data fields that act after the cache: a change to them reuses the cached examples.
AFTER_CACHE_FIELDS = ('augment', 'autotune_ram_budget_gb', 'cache', 'cache_budget_gb',
                      'crop_centred_fraction', 'crop_sampling', 'crop_temperature',
                      'deterministic', 'service_address', 'service_mode', 'shuffle_buffer')


class Pipeline(NamedTuple):
  """What the streams read of the data section (data.*), resolved once by `pipeline`."""
  splits: sources.Splits
  label_feature: str
  image_size: tuple | None  # (height, width) every picture is resized to; None on crops.
  model_size: tuple  # (height, width) of the model's input: the crop, or image_size.
  crop: crops.CropSpec | None  # Training on crops at the pictures' own resolution.
  mask_lookup: object  # Stored mask value -> class id (sources.mask_lookup), or its reader.
  label_channels: int  # Of a label mask: 1, or one a class (multi-label).
  bands: int  # data.bands: 0 for uint8 RGB photos, else float32 rasters of that many bands.
  augmentation: augment_lib.Augmentation
  shuffle_buffer: int
  cache: str  # data.cache: 'auto', 'memory', 'none' or a file prefix.
  cache_budget_gb: float
  cache_fields: dict  # The data fields before the cache: part of a cache file's key.
  deterministic: bool
  ram_budget_gb: float  # data.autotune_ram_budget_gb (0: tf.data's own).
  service_address: str
  service_mode: str

  @property
  def per_pixel(self) -> bool:
    return tasks.of_label(self.label_feature).per_pixel


def pipeline(data_config) -> Pipeline:
  """The settled data section as the streams read it."""
  per_pixel = tasks.of_data(data_config).per_pixel
  augment = data_config.augment
  crop = (crops.CropSpec(sides(tuple(data_config.crop_size)), tuple(augment.scale_range))
          if on_crops(data_config) else None)
  return Pipeline(
      splits=sources.resolve_splits(data_config), label_feature=data_config.label_feature,
      image_size=None if crop else sides(data_config.image_size),
      model_size=model_input_size(data_config), crop=crop,
      mask_lookup=sources.mask_lookup(data_config) if per_pixel else None,
      label_channels=tasks.of_data(data_config).mask_channels(len(data_config.class_names)),
      bands=data_config.bands,
      augmentation=augment_lib.Augmentation(
          **{field: getattr(augment, field) for field in augment_lib.Augmentation._fields
             if field != 'jitter_bands'}, jitter_bands=jitter_bands(data_config)),
      shuffle_buffer=data_config.shuffle_buffer, cache=data_config.cache,
      cache_budget_gb=data_config.cache_budget_gb,
      cache_fields={k: v for k, v in dataclasses.asdict(data_config).items()
                    if k not in AFTER_CACHE_FIELDS},
      deterministic=data_config.deterministic,
      ram_budget_gb=data_config.autotune_ram_budget_gb,
      service_address=data_config.service_address, service_mode=data_config.service_mode)


def jitter_bands(data_config) -> tuple:
  """The raster bands (0-based) color_jitter changes: data.augment.jitter_bands, else
  data.rgb_bands, else the first three (one band: that band); none for photos."""
  chosen = (tuple(data_config.augment.jitter_bands) or tuple(data_config.rgb_bands)
            or tuple(range(1, min(data_config.bands, 3) + 1)))
  return tuple(band - 1 for band in chosen) if data_config.bands else ()


def preprocess_fn(spec: Pipeline):
  """`preprocess` as the pipeline asks: its image size (none when training on crops: the
  pictures at their own resolution), label and mask values."""
  return as_written(lambda example: preprocess(example, spec.image_size, spec.label_feature,
                                               spec.mask_lookup, spec.bands))


def cached_bytes(spec: Pipeline, num_examples: int, encoded_bytes: int = 0) -> int:
  """What `num_examples` examples take in a cache: preprocessed, uint8 RGB (rasters: float32
  bands) plus the mask; when training on crops, the examples as stored (`encoded_bytes`: each
  epoch crops them anew)."""
  if spec.crop:
    return encoded_bytes
  height, width = spec.image_size
  picture = 4 * spec.bands if spec.bands else 3
  return num_examples * height * width * (picture + (spec.label_channels if spec.per_pixel
                                                     else 0))


def resolve_cache(spec: Pipeline, num_examples: int, encoded_bytes: int = 0) -> tuple[str, str]:
  """(cache mode, why): `auto` is memory when the cached split fits data.cache_budget_gb."""
  if spec.cache != 'auto':
    return spec.cache, 'as configured'
  needed = cached_bytes(spec, num_examples, encoded_bytes) / 2**30
  what = 'stored' if spec.crop else 'decoded'
  if needed <= spec.cache_budget_gb:
    return 'memory', (f'{num_examples} {what} examples take {needed:.3f} GiB, within '
                      f'data.cache_budget_gb={spec.cache_budget_gb}')
  return 'none', (f'{num_examples} {what} examples would take {needed:.3f} GiB, more than '
                  f'data.cache_budget_gb={spec.cache_budget_gb}; every epoch decodes')


def cache_key(spec: Pipeline, builder, split: str, shard: int, num_shards: int) -> str:
  """What decides a cache file's examples (the prepared set, the slice read, every data field
  before the cache), hashed: a data.cache prefix shared by runs of another size, source or
  number of replicas gives each its own files instead of another run's examples."""
  text = json.dumps([builder.data_dir, split, shard, num_shards, spec.cache_fields],
                    sort_keys=True, default=str)
  return hashlib.sha1(text.encode()).hexdigest()[:12]


def _apply_cache(ds: tf.data.Dataset, spec: Pipeline, builder, split: str, name: str,
                 shard: int, num_shards: int) -> tf.data.Dataset:
  """Caches decoded, resized examples (on crops: the stored examples) in memory or in tf.data
  files named `<cache>.<name>-<cache_key>`."""
  cache, _ = resolve_cache(spec, sources.num_examples(builder, split),
                           sources.split_bytes(builder, split))
  if cache == 'none':
    return ds
  if cache == 'memory':
    return ds.cache()
  return ds.cache(f'{cache}.{name}-{cache_key(spec, builder, split, shard, num_shards)}')


SERVICE_MODES = {
    'parallel_epochs': tf.data.experimental.service.ShardingPolicy.OFF,
    'dynamic_sharding': tf.data.experimental.service.ShardingPolicy.DYNAMIC,
}


def _replica_stream(builder, spec: Pipeline, replica: int, num_replicas: int,
                    per_replica_batch: int, seed: int, start_step: int) -> tf.data.Dataset:
  """Endless, seeded training batches of one replica, from its own slice of the split."""
  split = spec.splits.train
  ds = sources.read_encoded(builder, split, shard=replica, num_shards=num_replicas)
  replica_seed = tf.random.experimental.stateless_fold_in(
      tf.constant([seed, 0], tf.int64), replica)
  if not spec.crop:
    ds = ds.map(preprocess_fn(spec), num_parallel_calls=tf.data.AUTOTUNE)
  ds = _apply_cache(ds, spec, builder, split, f'train-{replica}', replica, num_replicas)
  ds = ds.shuffle(spec.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat()
  if spec.crop:  # Each example's crop drawn from its place in the stream.
    ds = ds.enumerate().skip(start_step * per_replica_batch)
    crop_seed = tf.random.experimental.stateless_fold_in(replica_seed, 1)
    ds = ds.map(as_written(lambda index, example: crops.random_crop(
        example, tf.random.experimental.stateless_fold_in(crop_seed, index), spec.crop,
        spec.mask_lookup, spec.bands)), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(per_replica_batch, drop_remainder=True).enumerate(start_step)
  else:
    ds = ds.batch(per_replica_batch, drop_remainder=True).enumerate().skip(start_step)
  ds = ds.map(as_written(lambda index, batch: augment_lib.augment(
      batch, tf.random.experimental.stateless_fold_in(replica_seed, index), spec.augmentation)),
      num_parallel_calls=tf.data.AUTOTUNE)
  if spec.service_address:  # uint8 batches over the wire, a quarter of float32's bytes.
    ds = ds.apply(tf.data.experimental.service.distribute(
        processing_mode=SERVICE_MODES[spec.service_mode],
        service=spec.service_address, job_name=f'segstream-train-{replica}'))
  return ds


def train_dataset(builder, spec: Pipeline, global_batch_size: int, seed: int,
                  start_step: int, input_context: tf.distribute.InputContext | None = None
                  ) -> tf.data.Dataset:
  """This pipeline's endless, seeded per-replica training batches, from `start_step` on.

  Every replica has its own slice of the split and its own seeded stream, and a pipeline
  hands its replicas' batches out in turn: what a replica trains on depends only on its
  global index, so 2 workers of 1 replica train like 1 worker of 2 replicas, and every
  example is read by one worker once per epoch. A resumed run skips to `start_step`'s place in
  its stream; the examples within a shuffle buffer come in the same order again only with
  data.deterministic=True (parallel decoding may reorder them otherwise).
  """
  num_replicas = input_context.num_replicas_in_sync if input_context else 1
  pipelines = input_context.num_input_pipelines if input_context else 1
  replicas_here = num_replicas // pipelines
  first = (input_context.input_pipeline_id if input_context else 0) * replicas_here
  per_replica_batch = global_batch_size // num_replicas
  streams = [_replica_stream(builder, spec, first + k, num_replicas, per_replica_batch, seed,
                             start_step) for k in range(replicas_here)]
  ds = streams[0] if len(streams) == 1 else tf.data.Dataset.choose_from_datasets(
      streams, tf.data.Dataset.range(len(streams)).repeat())
  ds = ds.with_options(_options(spec.deterministic, spec.ram_budget_gb))
  return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(builder, spec: Pipeline, global_batch_size: int,
                 input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
  """Every example of this pipeline's slice of the eval split once, each with `weight` 1.

  The stream is padded with weight-0 examples to whole batches for every replica, and every
  pipeline yields the same number of batches: no replica ever gets an empty or ragged batch,
  and the weights keep the padding out of every metric. Training on crops, every picture comes
  at its own resolution, one per replica batch (the model slides over it in windows).
  """
  per_replica_batch = 1 if spec.crop else (
      input_context.get_per_replica_batch_size(global_batch_size) if input_context
      else global_batch_size)
  pipelines = input_context.num_input_pipelines if input_context else 1
  replicas_here = (input_context.num_replicas_in_sync // pipelines) if input_context else 1
  split = spec.splits.eval
  most_per_pipeline = math.ceil(sources.num_examples(builder, split) / pipelines)
  batches = math.ceil(most_per_pipeline / (per_replica_batch * replicas_here)) * replicas_here
  shard = input_context.input_pipeline_id if input_context else 0
  mine = sources.shard_split(split, shard, pipelines)
  ds = sources.read_encoded(builder, mine)
  prepare = preprocess_fn(spec)
  cache = lambda ds: _apply_cache(ds, spec, builder, split, f'eval-{shard}', shard, pipelines)
  if spec.crop:  # Whole pictures: the stored bytes are cached, not the pixels.
    ds = cache(ds)
  ds = ds.map(as_written(lambda ex: {**prepare(ex), 'weight': tf.constant(1.0)}),
              num_parallel_calls=tf.data.AUTOTUNE)
  if not spec.crop:
    ds = cache(ds)
  height, width = spec.model_size
  padding = tf.data.Dataset.from_tensors({
      'image': tf.zeros([height, width, spec.bands or 3],
                        tf.float32 if spec.bands else tf.uint8),
      'label': (tf.zeros([height, width, spec.label_channels], tf.uint8)
                if spec.per_pixel else tf.constant(0, tf.int32)),
      'weight': tf.constant(0.0)}).repeat(
          batches * per_replica_batch - sources.num_examples(builder, mine))
  # The padding follows the last example, so a file cache always sees its end and is kept.
  ds = ds.concatenate(padding).batch(per_replica_batch, drop_remainder=True)
  return ds.with_options(_options(True, spec.ram_budget_gb)).prefetch(
      tf.data.AUTOTUNE)


def preview_batch(builder, spec: Pipeline, count: int) -> dict:
  """The first `count` eval examples as one batch at the model's size, neither cached (one
  partial read: a cache would only be filled and dropped) nor padded: the fixed pictures that
  every evaluation and explain pass shows. Training on crops, each is its central crop at its
  own resolution, the scale the model learns at."""
  if spec.crop:
    prepare = as_written(lambda example: crops.center_crop(example, spec.crop.size,
                                                           spec.mask_lookup, spec.bands))
  else:
    prepare = preprocess_fn(spec)
  ds = sources.first_examples(builder, spec.splits.eval, count).map(prepare)
  batch = next(iter(ds.batch(count)))
  return {**batch, 'image': tf.cast(batch['image'], tf.float32)}


def _options(deterministic: bool, ram_budget_gb: float) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = deterministic
  if ram_budget_gb:
    options.autotune.ram_budget = int(ram_budget_gb * 2**30)
  # The trainer shards by split slices per input pipeline; tf.data must not shard again.
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  options.experimental_optimization.map_parallelization = True
  return options
