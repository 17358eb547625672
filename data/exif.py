"""EXIF orientation. A phone stores a photo as its sensor saw it, with a tag saying how to turn
it upright; viewers and annotation tools show it turned, so its mask is drawn on the turned
picture. TensorFlow's decoders ignore the tag: pictures are turned here, where they are read."""

import struct

import numpy as np

_ORIENTATION_TAG = 0x0112
_START_OF_SCAN = 0xDA


def orientation(encoded: bytes) -> int:
  """The EXIF orientation (1-8) of JPEG bytes; 1 (upright as stored) without one, for other
  formats and for a damaged EXIF block."""
  if encoded[:2] != b'\xff\xd8':
    return 1
  position = 2
  while position + 4 <= len(encoded) and encoded[position] == 0xFF:
    marker = encoded[position + 1]
    length = struct.unpack('>H', encoded[position + 2:position + 4])[0]
    if marker == _START_OF_SCAN:
      return 1
    segment = encoded[position + 4:position + 2 + length]
    if marker == 0xE1 and segment[:6] == b'Exif\x00\x00':
      return _tiff_orientation(segment[6:])
    position += 2 + length
  return 1


def _tiff_orientation(tiff: bytes) -> int:
  order = {b'II': '<', b'MM': '>'}.get(tiff[:2])
  if order is None or len(tiff) < 8:
    return 1
  try:
    ifd = struct.unpack(order + 'I', tiff[4:8])[0]
    for index in range(struct.unpack(order + 'H', tiff[ifd:ifd + 2])[0]):
      entry = tiff[ifd + 2 + 12 * index:ifd + 14 + 12 * index]
      if struct.unpack(order + 'H', entry[:2])[0] == _ORIENTATION_TAG:
        value = struct.unpack(order + 'H', entry[8:10])[0]
        return value if 1 <= value <= 8 else 1
  except struct.error:  # A truncated block: as stored.
    return 1
  return 1


def upright(picture: np.ndarray, tag: int) -> np.ndarray:
  """The picture (H, W[, C]) turned as EXIF orientation `tag` says (as PIL's exif_transpose)."""
  turns = {1: lambda p: p, 2: lambda p: p[:, ::-1], 3: lambda p: p[::-1, ::-1],
           4: lambda p: p[::-1], 5: lambda p: np.swapaxes(p, 0, 1),
           6: lambda p: np.rot90(p, -1), 7: lambda p: np.swapaxes(p, 0, 1)[::-1, ::-1],
           8: lambda p: np.rot90(p, 1)}
  return np.ascontiguousarray(turns[tag](picture))
