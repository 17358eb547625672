"""Writes a small, learnable Oxford-IIIT-Pet look-alike in the official extracted layout.

Photos are textured backgrounds with one or two "pets": cats are striped ellipses, dogs are
spotted rounded squares, so both the trimap task and the species task can be learned. Trimaps use
the official values: 1 inside a pet, 3 on a thin outline band, 2 elsewhere.
"""

import os
import shutil

import numpy as np
import tensorflow as tf

CAT, DOG = 1, 2  # Species ids as in the official list files.
_SHAPE_EXPONENT = {CAT: 2.0, DOG: 6.0}  # Superellipse exponents: ellipse vs rounded square.
_BREED = {CAT: (1, 1), DOG: (2, 1)}  # (class id 1-37, breed id) written in the list files.
_OUTLINE_PX = 1.5
_DONE_FILE = 'SYNTHETIC_DONE'


def render_example(rng: np.random.Generator, height: int, width: int, species: int):
  """Returns (photo uint8 HxWx3, trimap uint8 HxW with values 1/2/3) for one picture."""
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  # Backgrounds are greyish gradients with noise; pets are saturated, striped fur.
  base = rng.uniform(60, 190) + rng.uniform(-15, 15, size=3)
  slope = rng.uniform(-0.5, 0.5, size=(2, 1))
  photo = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
  photo += rng.normal(0, 15, size=(height, width, 3))
  trimap = np.full((height, width), 2, np.uint8)
  for _ in range(rng.integers(1, 3)):
    cy, cx = rng.uniform(0.25, 0.75) * height, rng.uniform(0.25, 0.75) * width
    ry, rx = rng.uniform(0.15, 0.3) * height, rng.uniform(0.15, 0.3) * width
    p = _SHAPE_EXPONENT[species]
    radius = (np.abs((yy - cy) / ry) ** p + np.abs((xx - cx) / rx) ** p) ** (1.0 / p)
    inside = radius < 1.0
    outline = np.abs(radius - 1.0) * min(ry, rx) < _OUTLINE_PX
    angle = rng.uniform(0, np.pi)
    frequency = rng.uniform(0.15, 0.4)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) * frequency
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) * frequency
    pattern = np.sin(u) if species == CAT else np.sign(np.sin(u) * np.sin(v))
    fur = rng.permutation([rng.uniform(200, 255), rng.uniform(0, 60), rng.uniform(60, 200)])
    photo[inside] = fur + 40.0 * pattern[inside, None]
    trimap[inside] = 1
    trimap[outline] = 3
  return np.clip(photo, 0, 255).astype(np.uint8), trimap


def write_synthetic_pets(folder: str, num_trainval: int, num_test: int, photo_size: int,
                         seed: int = 0) -> str:
  """Writes the dataset once into `folder` (atomically: built aside, then renamed)."""
  if os.path.exists(os.path.join(folder, _DONE_FILE)):
    return folder
  staging = folder.rstrip('/') + '.incomplete'
  shutil.rmtree(staging, ignore_errors=True)
  os.makedirs(os.path.join(staging, 'images'))
  os.makedirs(os.path.join(staging, 'annotations', 'trimaps'))
  rng = np.random.default_rng(seed)
  lists = {'trainval.txt': [], 'test.txt': []}
  for index in range(num_trainval + num_test):
    species = CAT if index % 2 == 0 else DOG
    name = f'synthetic_{"cat" if species == CAT else "dog"}_{index}'
    height = int(photo_size * rng.uniform(0.75, 1.0))
    photo, trimap = render_example(rng, height, photo_size, species)
    tf.io.write_file(os.path.join(staging, 'images', name + '.jpg'),
                     tf.io.encode_jpeg(photo, quality=90))
    tf.io.write_file(os.path.join(staging, 'annotations', 'trimaps', name + '.png'),
                     tf.io.encode_png(trimap[..., None]))
    class_id, breed_id = _BREED[species]
    list_name = 'trainval.txt' if index < num_trainval else 'test.txt'
    lists[list_name].append(f'{name} {class_id} {species} {breed_id}\n')
  for list_name, lines in lists.items():
    with open(os.path.join(staging, 'annotations', list_name), 'w') as f:
      f.writelines(lines)
  open(os.path.join(staging, _DONE_FILE), 'w').close()
  shutil.rmtree(folder, ignore_errors=True)
  os.replace(staging, folder)
  return folder


# A stand-in for a 4-band Sentinel-2 crop (B2 blue, B3 green, B4 red, B8 near infrared) as
# uint16 reflectance x 10,000: bare soil (class 0), vegetation (1) and artificial turf (2).
# Vegetation and turf have the same colours; only the near infrared (high for leaves, low for
# plastic) tells them apart, as NDVI does: what RGB alone cannot learn.
MULTISPECTRAL_CLASSES = ('soil', 'vegetation', 'turf')
_REFLECTANCE = np.array([[1200, 1500, 1800, 2400],   # soil: brighter towards red and NIR
                         [500, 900, 600, 4200],      # vegetation: green peak, NIR plateau
                         [500, 900, 600, 1000]])     # turf: vegetation's colours, no NIR


def render_multispectral(rng: np.random.Generator, height: int, width: int):
  """(bands uint16 [H, W, 4], class ids uint8 [H, W]) of one scene: soil with blobs of
  vegetation and turf, lit by a per-scene factor, with sensor noise."""
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  classes = np.zeros((height, width), np.uint8)
  for _ in range(int(rng.integers(3, 7))):
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    ry, rx = rng.uniform(0.08, 0.25) * height, rng.uniform(0.08, 0.25) * width
    classes[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1] = rng.integers(1, 3)
  light = rng.uniform(0.7, 1.3)
  bands = _REFLECTANCE[classes].astype(np.float32) * light
  bands *= rng.uniform(0.85, 1.15, (height, width, 1))  # Texture within a field.
  bands += rng.normal(0, 120, bands.shape)
  return np.clip(bands, 0, 10000).astype(np.uint16), classes


def write_multispectral(folder: str, count: int = 24, size: int = 64, seed: int = 0,
                        splits: tuple = ('train', 'test')) -> dict:
  """4-band uint16 GeoTIFFs (deflate, tiled, UTM 33N, 10 m pixels) in
  <folder>/<split>/images and class-id PNG masks in <folder>/<split>/masks; the test split
  gets a third as many. Returns {stem: class ids}."""
  import rasterio  # pylint: disable=import-outside-toplevel  Only rasters need GDAL.
  from rasterio.transform import from_origin  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  truth = {}
  for split in splits:
    os.makedirs(os.path.join(folder, split, 'images'), exist_ok=True)
    os.makedirs(os.path.join(folder, split, 'masks'), exist_ok=True)
    for index in range(count if split == 'train' else max(count // 3, 2)):
      bands, classes = render_multispectral(rng, size, size)
      stem = f'{split}_{index:03d}'
      profile = dict(driver='GTiff', width=size, height=size, count=bands.shape[-1],
                     dtype='uint16', crs='EPSG:32633', compress='deflate', tiled=True,
                     blockxsize=16, blockysize=16,
                     transform=from_origin(500000 + 10 * size * index, 5000000, 10, 10))
      with rasterio.open(os.path.join(folder, split, 'images', stem + '.tif'), 'w',
                         **profile) as out:
        out.write(np.moveaxis(bands, -1, 0))
      tf.io.write_file(os.path.join(folder, split, 'masks', stem + '.png'),
                       tf.io.encode_png(classes[..., None]))
      truth[stem] = classes
  return truth
