"""The tf.data pipeline: decode by content, resize, cache, shuffle, augment, batch, prefetch.

Pure functions on tensors (`preprocess`, `augment`) plus the
two dataset builders the trainer hands to `strategy.distribute_datasets_from_function`.
"""

import math

import tensorflow as tf

from data import sources
from data.decode import decode_image, decode_trimap


def preprocess(example: dict, image_size: int) -> dict:
  """Decoded, square-resized image (bilinear) and label mask (nearest: no invented labels)."""
  size = (image_size, image_size)
  image = tf.image.resize(decode_image(example['image']), size, method='bilinear')
  mask = tf.image.resize(decode_trimap(example['segmentation_mask']), size, method='nearest')
  return {
      'image': tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8),
      'mask': tf.cast(mask, tf.uint8),
  }


def augment(example: dict, seed: tf.Tensor, flip: bool, min_crop_fraction: float) -> dict:
  """Random flip and crop-and-rescale, the same draw for image and mask.

  `seed` is a stateless seed (shape [2]), so an example's augmentation depends only on its
  position in the stream: a resumed run sees exactly what an uninterrupted one would.
  """
  image, mask = example['image'], example['mask']
  flip_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  if flip:
    do_flip = tf.random.stateless_uniform([], flip_seed) < 0.5
    image = tf.cond(do_flip, lambda: tf.image.flip_left_right(image), lambda: image)
    mask = tf.cond(do_flip, lambda: tf.image.flip_left_right(mask), lambda: mask)
  if min_crop_fraction < 1.0:
    size = tf.shape(image)[:2]
    draws = tf.random.stateless_uniform([3], crop_seed)
    fraction = min_crop_fraction + (1.0 - min_crop_fraction) * draws[0]
    crop = tf.maximum(tf.cast(tf.cast(size, tf.float32) * fraction, tf.int32), 1)
    offset = tf.cast(tf.cast(size - crop, tf.float32) * draws[1:], tf.int32)
    image = tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([crop, [3]], 0))
    mask = tf.slice(mask, tf.concat([offset, [0]], 0), tf.concat([crop, [1]], 0))
    image = tf.cast(tf.round(tf.image.resize(image, size, method='bilinear')), tf.uint8)
    mask = tf.cast(tf.image.resize(mask, size, method='nearest'), tf.uint8)
  return {'image': image, 'mask': mask}


def _apply_cache(ds: tf.data.Dataset, cache: str, name: str) -> tf.data.Dataset:
  """Caches decoded, resized examples in memory or in tf.data files named `<cache>.<name>`."""
  if cache == 'none':
    return ds
  return ds.cache('' if cache == 'memory' else f'{cache}.{name}')


def _to_model_inputs(example: dict) -> dict:
  return {'image': tf.cast(example['image'], tf.float32), 'mask': example['mask']}


SERVICE_MODES = {
    'parallel_epochs': tf.data.experimental.service.ShardingPolicy.OFF,
    'dynamic_sharding': tf.data.experimental.service.ShardingPolicy.DYNAMIC,
}


def _replica_stream(builder, data_config, replica: int, num_replicas: int,
                    per_replica_batch: int, seed: int, start_step: int) -> tf.data.Dataset:
  """Endless, seeded training batches of one replica, from its own slice of the split."""
  split = sources.resolve_splits(data_config)[0]
  ds = sources.read_encoded(builder, split, shard=replica, num_shards=num_replicas)
  ds = ds.map(lambda ex: preprocess(ex, data_config.image_size),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = _apply_cache(ds, data_config.cache, f'train-{replica}')
  ds = ds.shuffle(data_config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat().enumerate().skip(start_step * per_replica_batch)
  replica_seed = tf.random.experimental.stateless_fold_in(
      tf.constant([seed, 0], tf.int64), replica)
  augment_config = data_config.augment
  ds = ds.map(lambda index, ex: _to_model_inputs(augment(
      ex, tf.random.experimental.stateless_fold_in(replica_seed, index), augment_config.flip,
      augment_config.min_crop_fraction)), num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(per_replica_batch, drop_remainder=True)
  if data_config.service_address:
    ds = ds.apply(tf.data.experimental.service.distribute(
        processing_mode=SERVICE_MODES[data_config.service_mode],
        service=data_config.service_address, job_name=f'segstream-train-{replica}'))
  return ds


def train_dataset(builder, data_config, global_batch_size: int, seed: int,
                  start_step: int, input_context: tf.distribute.InputContext | None = None
                  ) -> tf.data.Dataset:
  """This pipeline's endless, seeded per-replica training batches, from `start_step` on.

  Every replica has its own slice of the split and its own seeded stream, and a pipeline
  hands its replicas' batches out in turn: what a replica trains on depends only on its
  global index, so 2 workers of 1 replica train exactly like 1 worker of 2 replicas, and
  every example is read by one worker once per epoch.
  """
  num_replicas = input_context.num_replicas_in_sync if input_context else 1
  pipelines = input_context.num_input_pipelines if input_context else 1
  replicas_here = num_replicas // pipelines
  first = (input_context.input_pipeline_id if input_context else 0) * replicas_here
  per_replica_batch = global_batch_size // num_replicas
  streams = [_replica_stream(builder, data_config, first + k, num_replicas, per_replica_batch,
                             seed, start_step) for k in range(replicas_here)]
  ds = streams[0] if len(streams) == 1 else tf.data.Dataset.choose_from_datasets(
      streams, tf.data.Dataset.range(len(streams)).repeat())
  ds = ds.with_options(_options(deterministic=data_config.deterministic))
  return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(builder, data_config, global_batch_size: int,
                 input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
  """Every example of this pipeline's slice of the eval split once, each with `weight` 1.

  The stream is padded with weight-0 examples to whole batches for every replica, and every
  pipeline yields the same number of batches: no replica ever gets an empty or ragged batch,
  and the weights keep the padding out of every metric.
  """
  per_replica_batch = (input_context.get_per_replica_batch_size(global_batch_size)
                       if input_context else global_batch_size)
  pipelines = input_context.num_input_pipelines if input_context else 1
  replicas_here = (input_context.num_replicas_in_sync // pipelines) if input_context else 1
  split = sources.resolve_splits(data_config)[1]
  most_per_pipeline = math.ceil(sources.num_examples(builder, split) / pipelines)
  rounds = math.ceil(most_per_pipeline / (per_replica_batch * replicas_here))
  shard = input_context.input_pipeline_id if input_context else 0
  ds = sources.read_encoded(builder, split, shard=shard, num_shards=pipelines)
  ds = ds.map(lambda ex: preprocess(ex, data_config.image_size),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = _apply_cache(ds, data_config.cache, f'eval-{shard}')
  ds = ds.map(lambda ex: {**_to_model_inputs(ex), 'weight': tf.constant(1.0)})
  size = data_config.image_size
  padding = tf.data.Dataset.from_tensors({
      'image': tf.zeros([size, size, 3], tf.float32), 'mask': tf.zeros([size, size, 1], tf.uint8),
      'weight': tf.constant(0.0)}).repeat()
  ds = ds.concatenate(padding).batch(per_replica_batch, drop_remainder=True)
  ds = ds.take(rounds * replicas_here)
  return ds.with_options(_options(deterministic=True)).prefetch(tf.data.AUTOTUNE)


def _options(deterministic: bool) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = deterministic
  # The trainer shards by split slices per input pipeline; tf.data must not shard again.
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  options.experimental_optimization.map_parallelization = True
  return options
