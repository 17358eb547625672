"""The data section as the data layer takes it: frozen, typed plain values (configs/base.py
documents each field), made once from the settled config (specs.describe). The layer reads
fields by name; nothing in it changes them."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Files:
  """data.files: your own pictures and masks, a folder per split."""
  image_suffix: str
  mask_suffix: str
  train_images: str | None
  train_masks: str | None
  train_list: str | None
  validation_images: str | None
  validation_masks: str | None
  validation_list: str | None
  test_images: str | None
  test_masks: str | None
  test_list: str | None


@dataclasses.dataclass(frozen=True)
class Augment:
  """data.augment (data/augment.py)."""
  flip: bool
  min_crop_fraction: float
  max_aspect_ratio: float
  scale_range: tuple
  color_jitter: float
  hue: float
  grayscale: float
  blur: float
  noise: float
  jitter_bands: tuple


@dataclasses.dataclass(frozen=True)
class Synthetic:
  """data.synthetic: the generated stand-in set."""
  dir: str | None
  num_trainval: int
  num_test: int
  photo_size: int


@dataclasses.dataclass(frozen=True)
class Annotations:
  """data.annotations: masks drawn from annotators' shapes."""
  crowd: str
  class_priority: tuple
  line_width: int


@dataclasses.dataclass(frozen=True)
class Data:
  """data.*: where the pictures come from, how labels are read, and the input pipeline."""
  source: str
  tfds_name: str
  image_key: str
  mask_key: str
  data_dir: str | None
  manual_dir: str | None
  download: bool
  folder: str | None
  skip_bad_examples: bool
  image_size: int | tuple
  resize: str
  crop_size: tuple
  crop_sampling: str
  crop_temperature: float
  crop_centred_fraction: float
  label_feature: str
  class_names: tuple
  label_map: str
  mask_colors: tuple
  ignore_index: int | None
  bands: int
  read_bands: tuple
  rgb_bands: tuple
  nodata: float | None
  band_stats: tuple
  files: Files
  validation_fraction: float
  train_split: str | None
  eval_split: str | None
  test_split: str | None
  shuffle_buffer: int
  deterministic: bool
  cache: str
  cache_budget_gb: float
  autotune_ram_budget_gb: float
  augment: Augment
  service_address: str
  service_mode: str
  synthetic: Synthetic
  annotations: Annotations

