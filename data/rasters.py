"""Pictures with any number of bands (data.bands > 0): GeoTIFF / TIFF through rasterio (GDAL:
band- or pixel-interleaved, 8/16/32-bit integer or float, tiled or striped, every compression
GDAL writes), `.npy` arrays (H, W, C) and PNGs at their own bit depth, read as float32 [H, W, B]
(every integer of 16 bits and float32 kept exactly). Photos (data.bands = 0) never come here.

Pure functions on arrays and tensors: reading one file, choosing its bands, the per-band
statistics that normalise them, missing values filled before anything resizes them, and the
viewable composite of three bands.
"""

import contextlib
import os
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from errors import DataError

TIFF_EXTENSIONS = ('.tif', '.tiff')


class BandsError(DataError):
  """A raster without the bands the config asks for."""


class BandSpec(NamedTuple):
  """What a raster picture is made of: data.bands, data.read_bands, data.nodata."""
  count: int  # Bands the model takes (after read_bands).
  read: tuple = ()  # 1-based band numbers to read from each file (GDAL's); () = all.
  nodata: float | None = None  # A value marking missing pixels.


def band_spec(data_config) -> BandSpec | None:
  """The data section's bands, or None for photos (data.bands = 0)."""
  if not data_config.bands:
    return None
  return BandSpec(data_config.bands, tuple(data_config.read_bands), data_config.nodata)


class Raster(NamedTuple):
  pixels: np.ndarray  # float32 [H, W, B]: the bands read.
  dtype: str  # The file's own sample type ('uint16', 'float32', ...).
  file_bands: int  # How many bands the file holds.
  nodata_tag: float | None = None  # The value the file itself declares missing (GDAL's tag).


TIFF_SIGNATURES = (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+')  # Classic and BigTIFF.


def is_tiff(data: bytes) -> bool:
  return data[:4] in TIFF_SIGNATURES


def _unreadable(path: str | bytes, error: Exception) -> DataError:
  name = 'the file' if isinstance(path, bytes) else path
  return DataError(f'{name} cannot be read as a raster (rasterio/GDAL: {error}). Check the file '
                   '(gdalinfo shows what GDAL makes of it) or convert it to GeoTIFF.')


def _open_tiff(path: str | bytes):
  """rasterio's dataset of a TIFF file, or of a TIFF's bytes; a DataError naming the file and
  what GDAL said when it cannot be opened."""
  import rasterio  # pylint: disable=import-outside-toplevel  Photos never need GDAL.
  from rasterio.errors import RasterioError  # pylint: disable=import-outside-toplevel
  from rasterio.io import MemoryFile  # pylint: disable=import-outside-toplevel
  try:
    return MemoryFile(path).open() if isinstance(path, bytes) else rasterio.open(path)
  except RasterioError as e:
    raise _unreadable(path, e) from None


def _read_tiff(path: str | bytes) -> tuple[np.ndarray, str, float | None]:
  """(pixels [H, W, C], sample type, nodata tag) of a TIFF file, or of a TIFF's bytes."""
  from rasterio.errors import RasterioError  # pylint: disable=import-outside-toplevel
  with _open_tiff(path) as source:
    try:
      return np.moveaxis(source.read(), 0, -1), source.dtypes[0], source.nodata
    except RasterioError as e:
      raise _unreadable(path, e) from None


def decode_tiff(data: bytes) -> np.ndarray:
  """A TIFF's pixels [H, W, C] in its own type, from its bytes (a GeoTIFF mask)."""
  return _read_tiff(data)[0]


def _read_png(path: str) -> tuple[np.ndarray, str, None]:
  with open(path, 'rb') as f:
    encoded = f.read()
  deep = len(encoded) > 24 and encoded[:8] == b'\x89PNG\r\n\x1a\n' and encoded[24] == 16
  try:
    pixels = tf.io.decode_png(encoded, dtype=tf.uint16 if deep else tf.uint8).numpy()
  except tf.errors.InvalidArgumentError as e:
    raise DataError(f'{path} cannot be decoded as a PNG ({e.message}).') from None
  return pixels, 'uint16' if deep else 'uint8', None


def read_file(path: str) -> tuple[np.ndarray, str, float | None]:
  """(pixels [H, W, C] in the file's own type, that type's name, the value it declares
  missing: GeoTIFF's nodata tag, else None) of a raster file."""
  extension = os.path.splitext(path)[1].lower()
  if extension in TIFF_EXTENSIONS:
    return _read_tiff(path)
  if extension == '.npy':
    try:
      pixels = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
      raise DataError(f'{path} cannot be read as a .npy array ({e}).') from None
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    if pixels.ndim != 3:
      raise DataError(f'{path} holds an array of shape {pixels.shape}; a picture is (height, '
                      'width) or (height, width, bands).')
    return pixels, str(pixels.dtype), None
  if extension == '.png':
    return _read_png(path)
  raise DataError(f'{path}: data.bands reads GeoTIFF/TIFF, .npy and PNG pictures, not '
                  f'{extension or "files without an extension"}; convert it (gdal_translate '
                  'writes GeoTIFF), or set data.bands=0 for photos.')


def read(path: str, spec: BandSpec) -> Raster:
  """The bands `spec` asks for of one file, float32 [H, W, spec.count]; a DataError naming
  the file and the fix when it lacks them or holds another count."""
  pixels, dtype, nodata_tag = read_file(path)
  file_bands = pixels.shape[-1]
  pixels = pixels[..., band_indices(path, file_bands, spec)]
  return Raster(pixels.astype(np.float32), dtype, file_bands, nodata_tag)


def band_indices(path: str, file_bands: int, spec: BandSpec) -> list[int]:
  """The 0-based bands of a file of `file_bands` that `spec` reads; a BandsError naming the
  file and the fix when it lacks them or holds another count."""
  if spec.read:
    missing = [b for b in spec.read if not 1 <= b <= file_bands]
    if missing:
      raise BandsError(f'{path} has {file_bands} bands; data.read_bands asks for band '
                       f'{missing[0]} (bands are numbered from 1, as GDAL numbers them).')
  count = len(spec.read) if spec.read else file_bands
  if count != spec.count:
    what = f'reads {count} of them' if spec.read else f'has {count} bands'
    raise BandsError(f'{path} {what}; data.bands={spec.count}. Set data.bands to the bands '
                     'every picture has, or data.read_bands to the ones to read.')
  return [b - 1 for b in spec.read] if spec.read else list(range(file_bands))


def grid_of(path: str) -> dict:
  """{'transform', 'crs'} of a GeoTIFF (None where it has none)."""
  import rasterio  # pylint: disable=import-outside-toplevel
  with rasterio.open(path) as source:
    return dict(transform=None if source.transform.is_identity else source.transform,
                crs=source.crs)


def write_probabilities(path: str, probabilities: np.ndarray, missing: np.ndarray | None,
                        grid: dict | None) -> None:
  """float32 probabilities [H, W, classes] as `probability_strips` writes them, in one strip."""
  height, width, count = probabilities.shape
  with probability_strips(path, height, width, count, grid) as write:
    write(probabilities, missing)


TILE = 256  # Rows and columns of a tile of the TIFFs predict writes.


@contextlib.contextmanager
def probability_strips(path: str, height: int, width: int, count: int, grid: dict | None):
  """`write(probabilities, missing)`: float32 [rows, width, count] strips, top to bottom, into
  a tiled, deflated TIFF of a band per class (on `grid`, grid_of a raster, when given), NaN (its
  nodata) where `missing` is True. Rows wait until a row of tiles is whole, so no tile is
  compressed twice and memory holds a strip and one row of tiles. Written beside `path`, moved
  there when every row is."""
  import rasterio  # pylint: disable=import-outside-toplevel
  from rasterio.windows import Window  # pylint: disable=import-outside-toplevel
  partial = path + '.partial.tif'
  held, done = [], 0  # Rows not written yet; rows written.

  def write(probabilities: np.ndarray, missing: np.ndarray | None = None) -> None:
    nonlocal held, done
    bands = np.array(probabilities, np.float32)
    if missing is not None:
      bands[missing] = np.nan
    rows = np.concatenate(held + [bands])
    end = done + len(rows)
    ready = (end if end == height else end // TILE * TILE) - done
    if ready > 0:
      out.write(np.transpose(rows[:ready], (2, 0, 1)), window=Window(0, done, width, ready))
    held, done = [rows[ready:]], done + ready
  try:
    with rasterio.open(partial, 'w', driver='GTiff', width=width, height=height, count=count,
                       dtype='float32', nodata=np.nan, tiled=True, blockxsize=TILE,
                       blockysize=TILE, compress='deflate', predictor=3,
                       **{k: v for k, v in (grid or {}).items() if v is not None}) as out:
      yield write
    if done != height:
      raise ValueError(f'{path}: {done} of {height} rows of probabilities were written.')
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def write_mask_on_grid(path: str, mask: np.ndarray, grid: dict, nodata: int) -> None:
  """uint8 class ids [H, W] (or 0/1 labels [H, W, classes]: a band per class) as a
  cloud-optimised GeoTIFF on `grid` (grid_of a raster: its transform and CRS): tiled,
  deflated, with overviews (nearest: every value a class) and `nodata` marking pixels nothing
  was measured at; written beside `path`, then moved there."""
  import rasterio  # pylint: disable=import-outside-toplevel
  import rasterio.shutil  # pylint: disable=import-outside-toplevel
  bands = mask if mask.ndim == 3 else mask[..., None]
  height, width, count = bands.shape
  plain, cog = path + '.plain.tif', path + '.cog.tif'
  try:
    with rasterio.open(plain, 'w', driver='GTiff', width=width, height=height, count=count,
                       dtype='uint8', nodata=nodata, tiled=True, compress='deflate',
                       **{k: v for k, v in grid.items() if v is not None}) as out:
      out.write(np.transpose(bands, (2, 0, 1)))
    rasterio.shutil.copy(plain, cog, driver='COG', compress='DEFLATE',
                         overview_resampling='NEAREST', blocksize=256)
    os.replace(cog, path)
  finally:
    for leftover in (plain, cog):
      if os.path.exists(leftover):
        os.remove(leftover)


class RasterRows:
  """A TIFF read a strip of rows at a time (GDAL decodes only the tiles or strips a window
  touches), or as a small overview: how predict takes a raster too large to hold."""

  def __init__(self, path: str, spec: BandSpec):
    self._source = _open_tiff(path)
    self.height, self.width = self._source.height, self._source.width
    self._indexes = [i + 1 for i in band_indices(path, self._source.count, spec)]
    self._tag = self._source.nodata

  def rows(self, top: int, bottom: int) -> np.ndarray:
    """float32 [bottom - top, W, bands]; NaN where the file's own nodata tag marks a pixel."""
    from rasterio.windows import Window  # pylint: disable=import-outside-toplevel
    return self._as_read(self._source.read(
        self._indexes, window=Window(0, top, self.width, bottom - top)))

  def overview(self, max_side: int) -> np.ndarray:
    """float32 [h, w, bands], the whole raster averaged down to at most `max_side` a side."""
    from rasterio.enums import Resampling  # pylint: disable=import-outside-toplevel
    scale = max(self.height, self.width) / max_side
    shape = (len(self._indexes), max(1, round(self.height / scale)),
             max(1, round(self.width / scale)))
    return self._as_read(self._source.read(self._indexes, out_shape=shape,
                                           resampling=Resampling.average))

  def _as_read(self, bands: np.ndarray) -> np.ndarray:
    return tagged_missing(np.moveaxis(bands, 0, -1).astype(np.float32), self._tag)

  def close(self) -> None:
    self._source.close()


def valid_pixels(pixels: np.ndarray, nodata: float | None) -> np.ndarray:
  """bool [H, W]: pixels with a value in every band (not nodata in all bands, not NaN)."""
  valid = ~np.isnan(pixels).any(axis=-1)
  if nodata is not None and not np.isnan(nodata):
    valid &= ~(pixels == nodata).all(axis=-1)
  return valid


def tagged_missing(pixels: np.ndarray, tag: float | None) -> np.ndarray:
  """float32 pixels [H, W, B] with those a file's own nodata `tag` marks (in every band) as NaN,
  which the model fills as missing whatever data.nodata it was trained with."""
  if tag is None or np.isnan(tag):
    return pixels
  return np.where((pixels == tag).all(axis=-1, keepdims=True), np.float32(np.nan), pixels)


def filled(pixels: np.ndarray, nodata: float | None, mean) -> np.ndarray:
  """float32 pixels with every missing value (NaN, or `nodata` in every band) replaced by its
  band's mean, as the model's BandNormalization replaces them: so that resizing and cropping
  blend neighbours with the mean, not with -9999."""
  mean = np.asarray(mean, np.float32)
  out = np.where(np.isnan(pixels), mean, pixels)
  if nodata is not None and not np.isnan(nodata):
    out = np.where((pixels == nodata).all(axis=-1, keepdims=True), mean, out)
  return out.astype(np.float32)


# What a prepared raster is stored as: its file's own integer type where it has one of these
# (every measured value exact; a gap's fill, the band mean, rounded), half or a quarter of
# float32's bytes to write, read and parse each epoch; any other type as float32.
STORED_TYPES = {'uint8': tf.uint8, 'uint16': tf.uint16, 'int16': tf.int16}


def serialize(pixels: np.ndarray, sample_type: str = 'float32') -> bytes:
  """[H, W, B] values as the prepared set stores them (`STORED_TYPES`), decoded in the graph."""
  dtype = STORED_TYPES.get(sample_type, tf.float32)
  if dtype != tf.float32:
    pixels = np.clip(np.round(pixels), dtype.min, dtype.max)
  return tf.io.serialize_tensor(tf.constant(pixels, dtype)).numpy()


def decode(encoded: tf.Tensor, count: int) -> tf.Tensor:
  """float32 [H, W, count] of what `serialize` stored, in whichever type: a TensorProto's
  first field (the byte after the tag 0x08) is its dtype."""
  stored = tf.strings.substr(encoded, 1, 1)
  pixels = tf.case(
      [(tf.equal(stored, bytes([dtype.as_datatype_enum])),
        lambda dtype=dtype: tf.cast(tf.io.parse_tensor(encoded, dtype), tf.float32))
       for dtype in STORED_TYPES.values()],
      default=lambda: tf.io.parse_tensor(encoded, tf.float32))
  return tf.ensure_shape(pixels, [None, None, count])


class BandStats:
  """Per-band mean and standard deviation over valid pixels, merged picture by picture as they
  stream past (never all in memory; Chan's pairwise update of mean and squared deviations, in
  float64), with each band's range and the missing share."""

  def __init__(self, count: int):
    self.valid = 0
    self.pixels = 0
    self.mean = np.zeros(count)
    self.deviations = np.zeros(count)  # Sum of squared deviations from the mean.
    self.low = np.full(count, np.inf)
    self.high = np.full(count, -np.inf)

  def add(self, pixels: np.ndarray, valid: np.ndarray) -> None:
    """One picture's pixels [H, W, B] where `valid` [H, W] holds."""
    values = pixels.reshape(-1, pixels.shape[-1]) if valid.all() else pixels[valid]
    part = BandStats(len(self.mean))
    part.pixels = valid.size
    if len(values):
      part.valid = len(values)
      part.mean = values.mean(axis=0, dtype=np.float64)
      centred = values - part.mean.astype(values.dtype)
      part.deviations = np.einsum('ij,ij->j', centred, centred, dtype=np.float64)
      part.low, part.high = values.min(axis=0), values.max(axis=0)
    self.merge(part)

  def merge(self, other: 'BandStats') -> None:
    """Adds another picture's (or set's) statistics: those of both together."""
    total = self.valid + other.valid
    if other.valid:
      delta = other.mean - self.mean
      self.mean = self.mean + delta * (other.valid / total)
      self.deviations = (self.deviations + other.deviations
                         + delta * delta * (self.valid * other.valid / total))
    self.low = np.minimum(self.low, other.low)
    self.high = np.maximum(self.high, other.high)
    self.valid = total
    self.pixels += other.pixels

  def result(self) -> dict:
    std = np.sqrt(self.deviations / max(self.valid, 1))
    return {'mean': [round(float(m), 6) for m in self.mean],
            'std': [round(float(s), 6) if s > 0 else 1.0 for s in std],
            'min': [float(v) for v in self.low], 'max': [float(v) for v in self.high],
            'nodata_fraction': round(1.0 - self.valid / max(self.pixels, 1), 6)}


def composite(pixels: np.ndarray, rgb_bands: tuple, nodata: float | None = None,
              low_high: tuple = (2.0, 98.0)) -> np.ndarray:
  """uint8 [H, W, 3]: three bands (1-based among those read; one band: grey) stretched from
  their 2nd to 98th percentile over the measured pixels, as GIS viewers show a raster; missing
  pixels (NaN, or `nodata` in every band) black."""
  chosen = [b - 1 for b in rgb_bands] if rgb_bands else (
      [0, 1, 2] if pixels.shape[-1] >= 3 else [0, 0, 0])
  bands = pixels[..., chosen].astype(np.float64)
  measured = valid_pixels(pixels, nodata)[..., None] & np.isfinite(bands)
  out = np.zeros(bands.shape, np.uint8)
  for k in range(3):
    values = bands[..., k][measured[..., k]]
    if not values.size:
      continue
    low, high = np.percentile(values, low_high)
    scaled = np.clip(np.nan_to_num((bands[..., k] - low) / max(high - low, 1e-12) * 255.0), 0,
                     255)
    out[..., k] = np.where(measured[..., k], scaled.round(), 0).astype(np.uint8)
  return out


def viewable(pictures, bands: int, rgb_bands: tuple, nodata: float | None = None
             ) -> np.ndarray:
  """What a person looks at: photos (data.bands 0, 0-255 RGB) as they are, rasters (one
  picture [H, W, B] or a batch) as their `composite`, each picture stretched on its own."""
  pictures = np.asarray(pictures)
  if not bands:
    return pictures
  if pictures.ndim == 4:
    return np.stack([composite(p, rgb_bands, nodata) for p in pictures])
  return composite(pictures, rgb_bands, nodata)
