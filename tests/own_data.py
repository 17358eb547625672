"""Small sets in the mask encodings users bring, written as files (tests only).

Each picture shows a red disc (class 1) and a blue square (class 2) on a grey, noisy
background (class 0), so a segmenter can learn them in a few steps; `classes` is the truth.
"""

import os
import struct
import zlib

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from interpretability import colormaps

VOC_COLORS = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0]], np.uint8)
CLASS_COLORS = ((0, 0, 0), (255, 0, 0), (0, 0, 255))


def scene(rng: np.random.Generator, height: int, width: int):
  """(picture uint8 HxWx3, class ids uint8 HxW)."""
  yy, xx = np.mgrid[0:height, 0:width]
  classes = np.zeros((height, width), np.uint8)
  cy, cx, r = rng.uniform(0.3, 0.7) * height, rng.uniform(0.2, 0.4) * width, 0.18 * height
  classes[(yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2] = 1
  sy, sx, side = int(rng.uniform(0.2, 0.5) * height), int(0.6 * width), int(0.25 * height)
  classes[sy:sy + side, sx:sx + side] = 2
  picture = rng.normal(120, 20, (height, width, 3))
  picture[classes == 1] = (220, 40, 40)
  picture[classes == 2] = (40, 40, 220)
  picture += rng.normal(0, 10, picture.shape)
  return np.clip(picture, 0, 255).astype(np.uint8), classes


def palette_png(indices: np.ndarray, palette: np.ndarray) -> bytes:
  """A "P" (indexed colour) PNG of uint8 `indices` with `palette` ([n, 3] uint8)."""
  def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack('>I', len(body)) + kind + body + struct.pack(
        '>I', zlib.crc32(kind + body) & 0xffffffff)
  height, width = indices.shape
  rows = b''.join(b'\x00' + indices[y].astype(np.uint8).tobytes() for y in range(height))
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 3,
                                                             0, 0, 0))
          + chunk(b'PLTE', np.asarray(palette, np.uint8).tobytes())
          + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))


def voc_palette() -> np.ndarray:
  """PASCAL VOC's 256-colour palette (index 255, the border, is (224, 224, 192))."""
  return colormaps.voc_colors(256)


def _write(path: str, data) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(data if isinstance(data, bytes) else data.numpy())


def encode_mask(classes: np.ndarray, encoding: str, rng: np.random.Generator) -> bytes:
  """`classes` written the way `encoding` writes masks:
  binary: grey 0/255 (classes 0 and 1 only); palette: a VOC "P" PNG with a 255 border between
  classes; colors: RGB with blended colours on the edges; void: class ids with 11 on a
  one-pixel frame; ids: plain class ids."""
  if encoding == 'binary':
    return tf.io.encode_png((np.minimum(classes, 1) * 255)[..., None]).numpy()
  if encoding == 'palette':
    edge = _edges(classes)
    return palette_png(np.where(edge, 255, classes), voc_palette())
  if encoding == 'colors':
    rgb = np.array(CLASS_COLORS, np.uint8)[classes]
    edge = _edges(classes)
    blended = (rgb.astype(np.float32) * 0.5 + rng.uniform(40, 200, 3)).astype(np.uint8)
    rgb[edge] = blended[edge]
    return tf.io.encode_png(rgb).numpy()
  if encoding == 'void':
    ids = classes.copy()
    ids[0, :] = ids[-1, :] = ids[:, 0] = ids[:, -1] = 11
    return tf.io.encode_png(ids[..., None]).numpy()
  return tf.io.encode_png(classes[..., None]).numpy()


def _edges(classes: np.ndarray) -> np.ndarray:
  """Pixels whose right or lower neighbour has another class."""
  edge = np.zeros(classes.shape, bool)
  edge[:, :-1] |= classes[:, :-1] != classes[:, 1:]
  edge[:-1, :] |= classes[:-1, :] != classes[1:, :]
  return edge


def expected_classes(classes: np.ndarray, encoding: str) -> np.ndarray:
  """What the prepared mask must hold (255 where the encoding marks pixels to ignore)."""
  if encoding == 'binary':
    return np.minimum(classes, 1)
  if encoding in ('palette', 'colors'):
    return np.where(_edges(classes), 255, classes).astype(np.uint8)
  if encoding == 'void':
    ids = classes.copy()
    ids[0, :] = ids[-1, :] = ids[:, 0] = ids[:, -1] = 255
    return ids
  return classes


def write_set(folder: str, encoding: str, count: int = 24, size: int = 48, seed: int = 0,
              picture_ext: str = '.jpg', mask_suffix: str = '', mask_ext: str = '.png',
              splits=('train', 'test')) -> dict:
  """Pictures in <folder>/<split>/images, masks in <folder>/<split>/masks; returns
  {stem: class ids} of every written mask."""
  rng = np.random.default_rng(seed)
  truth = {}
  for split in splits:
    for index in range(count if split == 'train' else max(count // 3, 2)):
      height = size + int(rng.integers(0, 8))
      picture, classes = scene(rng, height, size)
      stem = f'{split}_{index:03d}'
      encoded = (tf.io.encode_jpeg(picture, quality=95) if picture_ext == '.jpg'
                 else tf.io.encode_png(picture))
      _write(os.path.join(folder, split, 'images', stem + picture_ext), encoded)
      _write(os.path.join(folder, split, 'masks', stem + mask_suffix + mask_ext),
             encode_mask(classes, encoding, rng))
      truth[stem] = expected_classes(classes, encoding)
  return truth


def write_classification_tree(folder: str, count: int = 12, size: int = 40, seed: int = 0):
  """<folder>/{discs,squares}/*.png: pictures whose class is their sub-folder."""
  rng = np.random.default_rng(seed)
  for index in range(count):
    picture, classes = scene(rng, size, size)
    name = 'discs' if index % 2 == 0 else 'squares'
    keep = 1 if name == 'discs' else 2
    picture[(classes != keep) & (classes != 0)] = 120
    _write(os.path.join(folder, name, f'{index:03d}.png'), tf.io.encode_png(picture))


class TinySegmentation(tfds.core.GeneratorBasedBuilder):
  """A TFDS set with other feature names ('picture', 'label_mask') and a void value 255:
  what `data.tfds_name` reads by name."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'picture': tfds.features.Image(), 'label_mask': tfds.features.Image(shape=(None, None, 1)),
        'file_name': tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return [tfds.core.SplitGenerator(name=name, gen_kwargs={'count': count, 'seed': seed})
            for seed, (name, count) in enumerate((('train', 24), ('validation', 6),
                                                  ('test', 6)))]

  def _generate_examples(self, count, seed):
    rng = np.random.default_rng(seed)
    for index in range(count):
      picture, classes = scene(rng, 40, 40)
      classes[0] = 255
      yield index, {'picture': picture, 'label_mask': classes[..., None],
                    'file_name': f'{index}.png'}


def with_orientation(jpeg: bytes, tag: int, byte_order: str = '>') -> bytes:
  """JPEG bytes with an EXIF block whose orientation is `tag`, as a phone writes it
  ('>': Motorola order, '<': Intel order)."""
  mark = b'MM' if byte_order == '>' else b'II'
  tiff = (mark + struct.pack(byte_order + 'HI', 42, 8) + struct.pack(byte_order + 'H', 1)
          + struct.pack(byte_order + 'HHIHH', 0x0112, 3, 1, tag, 0)
          + struct.pack(byte_order + 'I', 0))
  app1 = b'Exif\x00\x00' + tiff
  return jpeg[:2] + b'\xff\xe1' + struct.pack('>H', len(app1) + 2) + app1 + jpeg[2:]


MULTILABEL_CLASSES = ('disc', 'stripe', 'square')


def multilabel_scene(rng: np.random.Generator, height: int, width: int):
  """(picture uint8 HxWx3, 0/1 labels uint8 HxWx3): a disc (red), a horizontal stripe (blue)
  that crosses it more often than not, and a square (green) that the stripe may cross too;
  where two overlap, the picture shows both tints."""
  yy, xx = np.mgrid[0:height, 0:width]
  labels = np.zeros((height, width, 3), np.uint8)
  cy, cx, r = rng.uniform(0.3, 0.7) * height, rng.uniform(0.2, 0.45) * width, 0.2 * height
  labels[..., 0] = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
  top = int(cy + rng.uniform(-0.3, 0.2) * height)
  labels[max(top, 0):max(top + int(0.15 * height), 0), :, 1] = 1
  sy, sx, side = int(rng.uniform(0.1, 0.6) * height), int(0.62 * width), int(0.25 * height)
  labels[sy:sy + side, sx:sx + side, 2] = 1
  picture = rng.normal(110, 15, (height, width, 3))
  picture += labels @ np.array([[90.0, -30, -30], [-30, -30, 90], [-30, 90, -30]])
  picture += rng.normal(0, 8, picture.shape)
  return np.clip(picture, 0, 255).astype(np.uint8), labels


def encode_labels(labels: np.ndarray, encoding: str) -> dict:
  """{path below the masks folder, without extension: PNG bytes} of 0/1 `labels` written as
  `encoding` writes them: bands (one channel a class, 0/255), bits (bit k for class k), or
  folders (a 0/255 mask per class in its class's sub-folder)."""
  if encoding == 'bands':
    return {'': tf.io.encode_png(labels * 255).numpy()}
  if encoding == 'bits':
    bits = (labels.astype(np.uint8) << np.arange(labels.shape[-1], dtype=np.uint8)).sum(-1)
    return {'': tf.io.encode_png(bits.astype(np.uint8)[..., None]).numpy()}
  return {name: tf.io.encode_png(labels[..., k:k + 1] * 255).numpy()
          for k, name in enumerate(MULTILABEL_CLASSES)}


def write_multilabel_set(folder: str, encoding: str, count: int = 24, size: int = 48,
                         seed: int = 0, splits=('train', 'test')) -> dict:
  """Pictures in <folder>/<split>/images and their multi-label masks (`encode_labels`) in
  <folder>/<split>/masks; returns {stem: labels} of every picture."""
  rng = np.random.default_rng(seed)
  truth = {}
  for split in splits:
    for index in range(count if split == 'train' else max(count // 3, 2)):
      picture, labels = multilabel_scene(rng, size + int(rng.integers(0, 8)), size)
      stem = f'{split}_{index:03d}'
      _write(os.path.join(folder, split, 'images', stem + '.png'), tf.io.encode_png(picture))
      for below, data in encode_labels(labels, encoding).items():
        _write(os.path.join(folder, split, 'masks', below, stem + '.png'), data)
      truth[stem] = labels
  return truth
