"""Mask encodings people really have, turned into class-id masks: pure functions on bytes and
arrays, so tests and the preparation step call the same code.

A prepared mask holds class ids 0..N-1 and IGNORE for pixels that count in neither the loss nor
any metric. Encodings read: class ids (grey "L", 16-bit grey, or the indices of a palette "P"
PNG, never its colours), other values through a label map ('0:0,255:1'), and colour masks
through a table of (r, g, b), one colour per class.
"""

import struct
import zlib
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from data import rasters
from errors import ConfigError
from tasks import IGNORE  # A prepared mask's value for pixels that count nowhere.
MAX_CLASSES = IGNORE  # Class ids 0..254 fit in a uint8 mask beside IGNORE.
TRIMAP_LABEL_MAP = {1: 0, 2: 1, 3: 2}  # Oxford-IIIT Pet trimaps: pet, background, outline.
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class MaskEncoding(NamedTuple):
  """How one data set writes its masks (from data.label_map, data.mask_colors,
  data.ignore_index and the number of data.class_names)."""
  num_classes: int
  label_map: dict | None = None  # raw value -> class id; None: values are class ids.
  colors: tuple = ()  # (r, g, b) of class 0, 1, ...; colours off the table are ignored.
  ignore_index: int | None = None  # A raw value whose pixels count nowhere.


ANY = -1  # A label_map key: every value the map does not name ('*').


def parse_label_map(text: str, num_classes: int) -> dict | None:
  """'0:0,255:1' -> {0: 0, 255: 1}; '' -> None. A class may be `ignore` (IGNORE), and the
  value `*` stands for every value the map does not name (Cityscapes: '7:0,8:1,...,*:ignore').
  A ConfigError names what is wrong."""
  if not text or not text.strip():
    return None
  label_map = {}
  for pair in text.replace(' ', '').split(','):
    raw, sep, label = pair.partition(':')
    if not sep or not (raw.isdigit() or raw == '*') or not (label.isdigit() or label == 'ignore'):
      raise ConfigError(f'data.label_map={text!r}: {pair!r} is not value:class (whole numbers; '
                        "the class may be 'ignore', the value '*' for all others), e.g. "
                        "data.label_map='0:0,255:1'.")
    key = ANY if raw == '*' else int(raw)
    if key in label_map:
      raise ConfigError(f'data.label_map={text!r} maps the value {raw} twice.')
    if label != 'ignore' and int(label) >= num_classes:
      raise ConfigError(f'data.label_map={text!r} maps {raw} to class {label}, but '
                        f'data.class_names has {num_classes} classes (0..{num_classes - 1}).')
    label_map[key] = IGNORE if label == 'ignore' else int(label)
  return label_map


def encoding_from_config(data_config, default_label_map: dict | None = None) -> MaskEncoding:
  """The MaskEncoding a checked data config describes; `default_label_map` where the config
  gives none (a source's own convention, such as the Oxford trimaps)."""
  num_classes = len(data_config.class_names)
  label_map = parse_label_map(data_config.label_map, num_classes) or default_label_map
  colors = tuple(tuple(int(v) for v in color) for color in data_config.mask_colors)
  return MaskEncoding(num_classes, label_map, colors, data_config.ignore_index)


def lookup_table(encoding: MaskEncoding, size: int = 256) -> np.ndarray:
  """uint8 [size]: class id (or IGNORE) of each raw value; values that map to no class are
  IGNORE too (check_data reports them before training)."""
  table = np.full(size, IGNORE, np.uint8)
  if encoding.label_map is None:
    table[:min(encoding.num_classes, size)] = np.arange(min(encoding.num_classes, size))
  else:
    table[:] = encoding.label_map.get(ANY, IGNORE)
    for raw, label in encoding.label_map.items():
      if 0 <= raw < size:
        table[raw] = label
  if encoding.ignore_index is not None and encoding.ignore_index < size:
    table[encoding.ignore_index] = IGNORE
  return table


def _png_chunks(data: bytes):
  """(type, body, start, end) of each chunk of a PNG file."""
  pos = len(_PNG_SIGNATURE)
  while pos + 8 <= len(data):
    length = struct.unpack('>I', data[pos:pos + 4])[0]
    yield data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length], pos, pos + 12 + length
    pos += 12 + length


def png_palette(data: bytes) -> np.ndarray | None:
  """[entries, 3] uint8 colours of a palette ("P") PNG, or None for any other file."""
  if not data.startswith(_PNG_SIGNATURE):
    return None
  palette = None
  for kind, body, _, _ in _png_chunks(data):
    if kind == b'IHDR' and body[9] != 3:  # Colour type 3: indexed colour.
      return None
    if kind == b'PLTE':
      palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
  return palette


def palette_indices(data: bytes) -> np.ndarray:
  """The palette indices of a "P" PNG as uint8 [H, W]. tf.io.decode_png returns the palette's
  colours (tensorflow#28256), so the palette is swapped for one whose entry i is (i, 0, 0)
  and the red channel read back: exact, whatever colours (or duplicates) the palette holds."""
  parts = [_PNG_SIGNATURE]
  for kind, body, start, end in _png_chunks(data):
    if kind == b'PLTE':
      count = len(body) // 3
      body = bytes(np.stack([np.arange(count), np.zeros(count), np.zeros(count)], 1)
                   .astype(np.uint8).ravel())
      parts.append(struct.pack('>I', len(body)) + kind + body +
                   struct.pack('>I', zlib.crc32(kind + body) & 0xffffffff))
    elif kind != b'tRNS':  # Transparency of the real palette: meaningless for indices.
      parts.append(data[start:end])
  return tf.io.decode_png(b''.join(parts), channels=3).numpy()[..., 0]


class RawMask(NamedTuple):
  values: np.ndarray  # [H, W] integer values, or [H, W, 3] uint8 colours.
  palette: np.ndarray | None  # A "P" PNG's colours (index -> (r, g, b)).


def _is_png16(data: bytes) -> bool:
  return data.startswith(_PNG_SIGNATURE) and len(data) > 24 and data[24] == 16


def read_mask(data: bytes) -> RawMask:
  """A mask file's values as stored: palette indices for "P" PNGs, grey values (8 or 16 bit;
  a TIFF's first band), or RGB colours; an RGB mask whose channels agree everywhere counts as
  grey. Raises tf.errors.InvalidArgumentError for a file that is not a decodable picture (a
  DataError for a TIFF GDAL cannot read)."""
  palette = png_palette(data)
  if palette is not None:
    return RawMask(palette_indices(data).astype(np.int32), palette)
  if _is_png16(data):
    values = tf.io.decode_png(data, dtype=tf.uint16).numpy()
  elif rasters.is_tiff(data):  # A GeoTIFF mask beside its raster (data.bands).
    values = rasters.decode_tiff(data)
  else:
    values = tf.io.decode_image(data, expand_animations=False).numpy()
  if values.shape[-1] in (2, 4):  # Alpha says nothing about classes.
    values = values[..., :-1]
  if values.shape[-1] == 3 and not (np.array_equal(values[..., 0], values[..., 1]) and
                                    np.array_equal(values[..., 0], values[..., 2])):
    return RawMask(values.astype(np.uint8), None)
  return RawMask(values[..., 0].astype(np.int32), None)


def color_codes(colors: np.ndarray) -> np.ndarray:
  """(r, g, b) -> one integer r*65536 + g*256 + b, for any leading shape."""
  colors = np.asarray(colors, np.int64)
  return (colors[..., 0] << 16) | (colors[..., 1] << 8) | colors[..., 2]


def code_color(code: int) -> tuple:
  return (int(code) >> 16 & 255, int(code) >> 8 & 255, int(code) & 255)


class MappedMask(NamedTuple):
  classes: np.ndarray  # uint8 [H, W]: class ids, IGNORE for ignored pixels.
  unmapped: dict  # raw value (or colour code) -> pixels that map to no class.
  off_table: dict  # colour code -> pixels whose colour is not in data.mask_colors.
  is_color: bool  # The file holds colours (which need data.mask_colors).
  values: tuple = ()  # The raw values present (value masks).


def map_mask(raw: RawMask, encoding: MaskEncoding) -> MappedMask:
  """Class ids of a raw mask. Colour tables send colours off the table (blended edges) to
  IGNORE (`off_table`), and read a "P" PNG by its palette's colours; value masks (a "P" PNG's
  indices) send unmapped values to IGNORE (`unmapped`: a problem that check_data reports,
  since those pixels lose their class)."""
  values = raw.values
  if encoding.colors and raw.palette is not None:  # A "P" PNG read by what it shows.
    values = raw.palette[np.clip(values, 0, len(raw.palette) - 1)]
  is_color = values.ndim == 3
  if encoding.colors:
    if not is_color:
      values = np.repeat(values[..., None], 3, -1)
    codes = color_codes(values)
    table_codes = color_codes(np.array(encoding.colors))
    order = np.argsort(table_codes)
    found, counts = np.unique(codes, return_counts=True)
    at = np.clip(np.searchsorted(table_codes[order], found), 0, len(order) - 1)
    hit = table_codes[order][at] == found
    labels = np.where(hit, order[at], IGNORE).astype(np.uint8)
    classes = labels[np.searchsorted(found, codes)]
    off = {int(code): int(n) for code, n, h in zip(found, counts, hit) if not h}
    return MappedMask(classes, {}, off, is_color)
  if is_color:  # No table: every colour is off it (listed, so the user can write one).
    found, counts = np.unique(color_codes(values), return_counts=True)
    return MappedMask(np.full(values.shape[:2], IGNORE, np.uint8), {},
                      {int(c): int(n) for c, n in zip(found, counts)}, True)
  size = max(int(values.max(initial=0)) + 1, 256)
  table = lookup_table(encoding, size)
  classes = table[values]
  counts = np.bincount(values.ravel(), minlength=size)
  named_ignored = {raw for raw, label in (encoding.label_map or {}).items() if label == IGNORE}
  if (encoding.label_map or {}).get(ANY) == IGNORE:  # '*:ignore': nothing is unmapped.
    named_ignored = set(range(size))
  unmapped = {v: int(counts[v]) for v in np.flatnonzero((table == IGNORE) & (counts > 0))
              if v != encoding.ignore_index and v not in named_ignored}
  return MappedMask(classes, unmapped, {}, False, tuple(np.flatnonzero(counts).tolist()))


def suggested_label_map(values: list, num_classes: int) -> str | None:
  """A data.label_map that maps the sorted raw `values` seen to classes 0.. in order, when
  there are exactly as many values as classes (0/255 binary masks, 96/128/200 display values)."""
  values = sorted(values)
  if len(values) != num_classes:
    return None
  return ','.join(f'{v}:{c}' for c, v in enumerate(values))


def median_frequency_weights(class_pixels) -> tuple:
  """Median frequency balancing (Eigen & Fergus): weight_c = median(f) / f_c, with f_c the
  class's share of the training pixels; 0 for a class that never occurs."""
  counts = np.asarray(class_pixels, np.float64)
  frequency = counts / max(counts.sum(), 1.0)
  present = frequency > 0
  median = float(np.median(frequency[present])) if present.any() else 1.0
  return tuple(float(median / f) if f > 0 else 0.0 for f in frequency)


class MultilabelMask(NamedTuple):
  labels: np.ndarray | None  # uint8 [H, W, classes]: 0/1, IGNORE where ignored; None: unusable.
  problem: tuple | None = None  # (kind, detail)


def read_bands(data: bytes) -> np.ndarray:
  """Every band of a mask file as stored, [H, W, bands]: a PNG's channels at its bit depth
  (alpha too: a 4-band mask of 4 classes), a palette PNG's indices, a TIFF's bands."""
  if png_palette(data) is not None:
    return palette_indices(data)[..., None].astype(np.int32)
  if rasters.is_tiff(data):
    return rasters.decode_tiff(data)
  if data.startswith(_PNG_SIGNATURE):
    return tf.io.decode_png(data, dtype=tf.uint16 if _is_png16(data) else tf.uint8).numpy()
  return tf.io.decode_image(data, expand_animations=False).numpy()


def multilabel_mask(values: np.ndarray, num_classes: int, path: str,
                    ignore_index: int | None = None) -> MultilabelMask:
  """0/1 labels per class of one mask file's bands (`read_bands`): a band per class (any value
  but 0 and `ignore_index` is 1), or one integer band whose bit k is class k. `ignore_index`
  ignores a class's pixel (a bitmask's: every class)."""
  bands = values.shape[-1]
  values = values.astype(np.int64)
  if bands == num_classes:
    labels = (values != 0).astype(np.uint8)
    if ignore_index is not None:
      labels[values == ignore_index] = IGNORE
    return MultilabelMask(labels)
  if bands != 1:
    return MultilabelMask(None, ('label_bands', f'{path} ({bands} bands, {num_classes} classes)'))
  value = values[..., 0]
  ignored = value == ignore_index if ignore_index is not None else np.zeros(value.shape, bool)
  above = (value >> num_classes) & ~ignored
  if above.any():
    top = int(np.max(np.where(ignored, 0, value))).bit_length() - 1
    return MultilabelMask(None, ('bits_above', f'{path} (bit {top} set)'))
  labels = ((value[..., None] >> np.arange(num_classes)) & 1).astype(np.uint8)
  labels[ignored] = IGNORE
  return MultilabelMask(labels)


def class_files_mask(paths: tuple, shape: tuple, ignore_index: int | None = None
                     ) -> MultilabelMask:
  """0/1 labels of a mask file per class (None: the class is absent), each file's first band
  non-zero where its class is; every file of the picture's `shape` (height, width)."""
  labels = np.zeros(tuple(shape) + (len(paths),), np.uint8)
  for index, path in enumerate(paths):
    if path is None:
      continue
    with open(path, 'rb') as f:
      values = read_bands(f.read())[..., 0].astype(np.int64)
    if values.shape != tuple(shape):
      return MultilabelMask(None, ('size', f'{path} ({values.shape[1]}x{values.shape[0]}, '
                                           f'picture {shape[1]}x{shape[0]})'))
    labels[..., index] = values != 0
    if ignore_index is not None:
      labels[values == ignore_index, index] = IGNORE
  return MultilabelMask(labels)
