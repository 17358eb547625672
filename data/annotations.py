"""Labels as annotators make them: COCO JSON, LabelMe JSON and CVAT for images 1.1 XML, read
and rasterised into class-id masks once, when the data is prepared.

Each format is drawn the way its own tools draw it, so the masks agree with the tools' own
exports: COCO and CVAT polygons with pycocotools (pixel (x, y) covers [x, x + 1) x [y, y + 1);
a pixel is inside when its centre is), LabelMe shapes with PIL's ImageDraw as labelme's
`shape_to_mask` does (vertices on pixel centres, the outline included). Pixels no shape covers
are class 0 (background). In one picture, later shapes are drawn over earlier ones (CVAT: by
z_order first), unless data.annotations.class_priority orders them by class. Crowd regions
(COCO's iscrowd) and CVAT's occluded shapes are the ignore label unless
data.annotations.crowd='class'.

Pure functions on files and arrays; problems (what stops preparation) and notes (what check_data
reports) are collected, not raised, except a file that does not parse.
"""

import base64
import binascii
import contextlib
import io
import json
import os
from typing import NamedTuple
import xml.etree.ElementTree as ElementTree

import numpy as np

from errors import DataError
from tasks import IGNORE

FILE_SUFFIXES = ('.json', '.xml')  # A split's annotations in one file: COCO, CVAT.
LABELME_SUFFIX = '.json'  # A folder of LabelMe files, one a picture.
# labelme2voc's labels that name no class, and what their regions are: the ignore label, and
# the background (labelme2coco also writes it as category 0).
TOOL_LABELS = {'__ignore__': IGNORE, '_background_': 0}


class Shape(NamedTuple):
  label: str
  kind: str  # polygon, rectangle, circle, line, rle (COCO), mask (CVAT), bitmap (LabelMe), point,
  # no_area (CVAT's cuboids and skeletons: points names the element).
  points: tuple  # ((x, y), ...); COCO RLE: its dict; CVAT mask: (left, top, width, height, rle);
  # LabelMe mask: (left, top, base64 PNG).
  z_order: int = 0
  crowd: bool = False  # COCO iscrowd, CVAT occluded.


class Annotated(NamedTuple):
  """One picture's shapes: the target of an Example when masks are annotations."""
  source: str  # The annotation file (its stat keys the prepared set).
  style: str  # 'coco' (pycocotools: COCO, CVAT) or 'labelme' (PIL).
  height: int | None  # What the file says the picture's size is (None: not said).
  width: int | None
  shapes: tuple
  subset: str = ''  # The subset a CVAT project's export puts the picture in ('': none).


class AnnotationSet(NamedTuple):
  """A split's annotations: {picture key: Annotated}, the declared label names in their
  order, and problems {kind: [details]}."""
  pictures: dict
  labels: tuple
  problems: dict


def is_annotation_file(path: str | None) -> bool:
  return bool(path) and os.path.isfile(path) and path.lower().endswith(FILE_SUFFIXES)


@contextlib.contextmanager
def _entry(path: str, what: str):
  """An entry of an annotation file that lacks a field or holds the wrong kind of value: one
  line naming the file, the entry and the field, not a KeyError from inside the reader."""
  try:
    yield
  except KeyError as e:
    raise DataError(f'{path}: {what} has no {e.args[0]!r}. Export the annotations again from '
                    'the tool, or add it there.') from None
  except (TypeError, ValueError, IndexError, AttributeError, binascii.Error, OSError) as e:
    raise DataError(f'{path}: {what} is malformed ({type(e).__name__}: {e}). Export the '
                    'annotations again from the tool, or fix it there.') from None


def _described(kind: str, index: int, entry) -> str:
  """How a problem line names an entry: its place in the file's list, and its id."""
  return f'{kind} {index}' + (f' (id {entry["id"]})' if isinstance(entry, dict)
                              and 'id' in entry else '')


def _load_json(path: str):
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise DataError(f'{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). '
                    'Export the annotations again or fix the file there.') from None
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f'{path} cannot be read ({e}).') from None


def picture_key(file_name: str) -> str:
  """How an annotation names its picture, as pairing keys pictures: the path without its
  extension, with '/' separators (COCO's file_name may carry a folder)."""
  return os.path.splitext(file_name.replace('\\', '/'))[0]


def read_coco(path: str) -> AnnotationSet:
  """A COCO instances file: polygons, uncompressed and compressed RLE, iscrowd. Labels are the
  categories in id order."""
  data = _load_json(path)
  if not isinstance(data, dict) or not all(k in data for k in ('images', 'annotations',
                                                              'categories')):
    raise DataError(f'{path} is not a COCO annotations file: it needs "images", "annotations" '
                    'and "categories" (LabelMe files go in a folder, one per picture).')
  problems, names = {}, {}
  for index, category in enumerate(data['categories']):
    with _entry(path, _described('category', index, category)):
      names[category['id']] = category['name']
  names = dict(sorted(names.items()))
  images, seen = {}, set()
  for index, image in enumerate(data['images']):
    with _entry(path, _described('image', index, image)):
      if image['id'] in seen:
        problems.setdefault('image_id_twice', []).append(f'{path}: image id {image["id"]}')
        continue
      seen.add(image['id'])
      images[image['id']] = (picture_key(image['file_name']), image.get('height'),
                             image.get('width'), [])
  for index, annotation in enumerate(data['annotations']):
    with _entry(path, _described('annotation', index, annotation)):
      _add_coco_annotation(annotation, path, names, images, problems)
  pictures = {key: Annotated(path, 'coco', height, width, tuple(shapes))
              for key, height, width, shapes in images.values()}
  return AnnotationSet(pictures, _classes(names.values()), problems)


def _add_coco_annotation(annotation: dict, path: str, names: dict, images: dict,
                         problems: dict) -> None:
  """One COCO annotation into its image's shapes, or into `problems`."""
  if annotation.get('category_id') not in names:
    problems.setdefault('undeclared_category', []).append(
        f'{path}: annotation {annotation.get("id")} has category_id '
        f'{annotation.get("category_id")}')
    return
  if annotation.get('image_id') not in images:
    problems.setdefault('unknown_image', []).append(
        f'{path}: annotation {annotation.get("id")} names image_id '
        f'{annotation.get("image_id")}')
    return
  segmentation = annotation.get('segmentation')
  label, crowd = names[annotation['category_id']], bool(annotation.get('iscrowd', 0))
  shapes = images[annotation['image_id']][3]
  if isinstance(segmentation, dict):
    shapes.append(Shape(label, 'rle', segmentation, crowd=crowd))
  else:
    shapes.extend(Shape(label, 'polygon', tuple(zip(
        map(float, polygon[::2]), map(float, polygon[1::2]))), crowd=crowd)
                  for polygon in segmentation or [])


def _classes(labels) -> tuple:
  """A file's labels that are classes, in its order."""
  return tuple(label for label in labels if label not in TOOL_LABELS)


def _points(text: str) -> tuple:
  return tuple(tuple(float(v) for v in pair.split(',')) for pair in text.split(';') if pair)


def read_cvat(path: str) -> AnnotationSet:
  """A CVAT for images 1.1 file: polygons, boxes, polylines, masks (CVAT's RLE), points
  (skipped); z_order and occluded kept. Labels in the order its meta declares them."""
  try:
    root = ElementTree.parse(path).getroot()
  except ElementTree.ParseError as e:
    line, column = e.position
    raise DataError(f'{path} is not valid XML (line {line}, column {column}). Export the '
                    'annotations again as "CVAT for images 1.1".') from None
  if root.tag != 'annotations':
    raise DataError(f'{path} is not a CVAT for images 1.1 file (its root is <{root.tag}>, '
                    'not <annotations>).')
  meta = root.find('meta')
  labels = _classes(dict.fromkeys(label.findtext('name') for label in (
      meta.iter('label') if meta is not None else ())))
  problems, pictures, seen = {}, {}, set()
  for image in root.iter('image'):
    # A project's export numbers images per task, and names its subsets.
    subset = image.get('subset', '')
    number = (image.get('task_id'), subset, image.get('id'))
    if number in seen:
      problems.setdefault('image_id_twice', []).append(
          f'{path}: image id {image.get("id")}' + (f' of subset {subset}' if subset else ''))
      continue
    seen.add(number)
    with _entry(path, f'<image id="{image.get("id")}">'):
      shapes = tuple(_cvat_shape(element) for element in image if element.tag != 'tag')
      key = picture_key(image.attrib['name'])
      pictures[f'{subset}/{key}' if subset else key] = Annotated(
          path, 'coco', int(image.attrib['height']), int(image.attrib['width']), shapes, subset)
  return AnnotationSet(pictures, labels, problems)


def _cvat_shape(element) -> Shape:
  """One shape of a CVAT image: boxes and ellipses (turned by their `rotation`, degrees
  clockwise about their centre) as polygons; cuboids and skeletons have no area."""
  attrs = element.attrib
  common = dict(label=attrs.get('label', ''), z_order=int(attrs.get('z_order', 0)),
                crowd=attrs.get('occluded') == '1')
  turn = np.radians(float(attrs.get('rotation', 0)))
  if element.tag in ('polygon', 'polyline', 'points'):
    kind = {'polygon': 'polygon', 'polyline': 'line', 'points': 'point'}[element.tag]
    return Shape(kind=kind, points=_points(attrs['points']), **common)
  if element.tag == 'box':
    x0, y0, x1, y1 = (float(attrs[k]) for k in ('xtl', 'ytl', 'xbr', 'ybr'))
    corners = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    return Shape(kind='polygon', points=_turned(corners, ((x0 + x1) / 2, (y0 + y1) / 2), turn),
                 **common)
  if element.tag == 'ellipse':
    cx, cy, rx, ry = (float(attrs[k]) for k in ('cx', 'cy', 'rx', 'ry'))
    around = np.linspace(0, 2 * np.pi, ELLIPSE_POINTS, endpoint=False)
    rim = np.stack([cx + rx * np.cos(around), cy + ry * np.sin(around)], axis=-1)
    return Shape(kind='polygon', points=_turned(rim, (cx, cy), turn), **common)
  if element.tag == 'mask':
    return Shape(kind='mask', points=tuple(int(float(attrs[k])) for k in (
        'left', 'top', 'width', 'height')) + (attrs['rle'],), **common)
  return Shape(kind='no_area', points=element.tag, **common)


ELLIPSE_POINTS = 360  # Vertices of the polygon an ellipse is drawn as.


def _turned(points: np.ndarray, centre: tuple, turn: float) -> tuple:
  """`points` turned by `turn` radians clockwise on the picture (y points down) about
  `centre`, as ((x, y), ...)."""
  if not turn:
    return tuple(map(tuple, points.tolist()))
  cos, sin = np.cos(turn), np.sin(turn)
  x, y = points[:, 0] - centre[0], points[:, 1] - centre[1]
  turned = np.stack([centre[0] + x * cos - y * sin, centre[1] + x * sin + y * cos], axis=-1)
  return tuple(map(tuple, turned.tolist()))


def read_labelme(path: str) -> Annotated:
  """One LabelMe file: polygon, rectangle, circle, line, linestrip, mask (a PNG over its box, as
  labelme's AI tools write), point (skipped)."""
  data = _load_json(path)
  if not isinstance(data, dict) or 'shapes' not in data:
    raise DataError(f'{path} is not a LabelMe file: it has no "shapes".')
  shapes = []
  for index, shape in enumerate(data['shapes']):
    with _entry(path, f'shape {index}'):
      kind = shape.get('shape_type') or 'polygon'  # Older files leave it out.
      points = tuple(tuple(float(v) for v in p) for p in shape['points'])
      if kind == 'mask':
        (left, top), _ = np.asarray(points).astype(int)
        shapes.append(Shape(shape['label'], 'bitmap', (left, top, shape['mask'])))
        continue
      shapes.append(Shape(shape['label'], 'line' if kind == 'linestrip' else kind, points))
  return Annotated(path, 'labelme', data.get('imageHeight'), data.get('imageWidth'),
                   tuple(shapes))


def read_split(masks: str) -> AnnotationSet:
  """A split's annotations: a COCO or CVAT file, or a folder of LabelMe files (keyed by their
  path below the folder, as pictures are)."""
  if os.path.isfile(masks):
    return read_cvat(masks) if masks.lower().endswith('.xml') else read_coco(masks)
  pictures = {}
  for folder, dirs, files in os.walk(masks):
    dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
    for name in sorted(files):
      if name.lower().endswith(LABELME_SUFFIX):
        file = os.path.join(folder, name)
        pictures[picture_key(os.path.relpath(file, masks))] = read_labelme(file)
  labels = sorted({shape.label for item in pictures.values() for shape in item.shapes})
  return AnnotationSet(pictures, _classes(labels), {})


def is_labelme_folder(folder: str | None) -> bool:
  """A folder whose files are LabelMe JSONs (and no mask pictures). A folder of mask pictures
  is told at its first picture: it is asked at start-up, and a mask folder may hold 100,000."""
  if not folder or not os.path.isdir(folder):
    return False
  found_json = False
  for _, _, files in os.walk(folder):
    for name in (n.lower() for n in files if not n.startswith('.')):
      if name.endswith(('.png', '.tif', '.tiff', '.bmp', '.gif', '.jpg', '.jpeg')):
        return False
      found_json |= name.endswith(LABELME_SUFFIX)
  return found_json


def is_annotations(masks: str | None) -> bool:
  """Whether a split's masks field names annotations rather than mask pictures."""
  return is_annotation_file(masks) or is_labelme_folder(masks)


class Drawn(NamedTuple):
  classes: np.ndarray  # uint8 [H, W]: class ids, IGNORE for crowd and unknown labels.
  overlap: np.ndarray  # int64 [classes, classes]: pixels a shape of one class was drawn over
  # a shape of another (each pair counted once, in the upper triangle's order of ids).
  notes: dict  # kind -> [detail]: shapes check_data reports.
  unknown: tuple  # Labels that are no class.


def draw(annotated: Annotated, class_names: tuple, height: int, width: int,
         crowd: str = 'ignore', class_priority: tuple = (), line_width: int = 10,
         overlapping: bool = False) -> Drawn:
  """The class ids of one picture's shapes at its own size (`height`, `width`); `overlapping`
  (multi-label): 0/1 labels [H, W, classes], each shape setting its own class's (a crowd
  shape set to ignore: its class's IGNORE)."""
  ids = {name: index for index, name in enumerate(class_names)}
  if overlapping:
    return _draw_labels(annotated, ids, height, width, crowd, line_width)
  order = {name: rank for rank, name in enumerate(class_priority)}
  shapes = sorted(annotated.shapes, key=lambda s: (order.get(s.label, -1), s.z_order)
                  if class_priority else s.z_order)  # Stable: file order within a level.
  classes = np.zeros((height, width), np.uint8)
  under = np.full((height, width), -1, np.int16)  # The class of the shape drawn last there.
  overlap = np.zeros((len(class_names), len(class_names)), np.int64)
  notes, unknown = {}, set()
  for shape, region in _regions(annotated, shapes, ids, height, width, line_width, notes,
                                unknown):
    if shape.label in TOOL_LABELS:
      classes[region], under[region] = TOOL_LABELS[shape.label], -1
      continue
    classes[region] = IGNORE if shape.crowd and crowd == 'ignore' else ids[shape.label]
    below = under[region]
    below = below[(below >= 0) & (below != ids[shape.label])]
    for other, count in zip(*np.unique(below, return_counts=True)):
      low, high = sorted((ids[shape.label], int(other)))
      overlap[low, high] += count
    under[region] = ids[shape.label]
  return Drawn(classes, overlap, notes, tuple(sorted(unknown)))


def _draw_labels(annotated: Annotated, ids: dict, height: int, width: int, crowd: str,
                 line_width: int) -> Drawn:
  """`draw` for classes that overlap: every shape on its own class's plane."""
  labels = np.zeros((height, width, len(ids)), np.uint8)
  notes, unknown = {}, set()
  shapes = sorted(annotated.shapes, key=lambda s: s.z_order)
  for shape, region in _regions(annotated, shapes, ids, height, width, line_width, notes,
                                unknown):
    if shape.label in TOOL_LABELS:
      labels[region] = TOOL_LABELS[shape.label]
      continue
    plane = labels[..., ids[shape.label]]
    plane[region] = IGNORE if shape.crowd and crowd == 'ignore' else np.maximum(
        plane[region], 1)
  on = (labels == 1).reshape(-1, len(ids)).astype(np.int64)
  overlap = np.triu(on.T @ on, 1)
  return Drawn(labels, overlap, notes, tuple(sorted(unknown)))


def _regions(annotated: Annotated, shapes: list, ids: dict, height: int, width: int,
             line_width: int, notes: dict, unknown: set):
  """(shape, bool [H, W] region) of each shape that can be drawn, in `shapes`' order; points
  and shapes that cannot be drawn go to `notes`, labels that are no class to `unknown`."""
  for shape in shapes:
    if shape.kind == 'point':
      notes.setdefault('points', []).append(f'{annotated.source} ({shape.label})')
      continue
    if shape.kind == 'no_area':
      notes.setdefault('no_area', []).append(f'{annotated.source} ({shape.label} '
                                             f'{shape.points})')
      continue
    if shape.label not in ids and shape.label not in TOOL_LABELS:
      unknown.add(shape.label)
      continue
    with _entry(annotated.source, f'a shape of {shape.label!r} ({shape.kind})'):
      region = _region(shape, annotated.style, height, width, line_width, notes,
                       annotated.source)
    if region is not None:
      yield shape, region


def _region(shape: Shape, style: str, height: int, width: int, line_width: int, notes: dict,
            where: str) -> np.ndarray | None:
  """bool [H, W] of one shape, or None (noted) for one that cannot be drawn."""
  if shape.kind == 'rle':
    return _coco_rle(shape.points, height, width)
  if shape.kind == 'mask':
    return _cvat_mask(*shape.points, height, width)
  if shape.kind == 'bitmap':
    return _labelme_mask(*shape.points, height, width)
  points = np.asarray(shape.points, np.float64).reshape(-1, 2)
  if shape.kind == 'polygon' and len(points) < 3:
    notes.setdefault('few_points', []).append(f'{where} ({shape.label}, {len(points)} points)')
    return None
  if len(points) and ((points < -0.5).any() or (points[:, 0] > width + 0.5).any()
                      or (points[:, 1] > height + 0.5).any()):
    notes.setdefault('outside', []).append(f'{where} ({shape.label})')
  if shape.kind == 'polygon' and self_intersects(points):
    notes.setdefault('self_intersecting', []).append(f'{where} ({shape.label})')
  if style == 'coco' and shape.kind == 'polygon':
    return _coco_polygon(points, height, width)
  return _pil_shape(shape.kind, points, height, width, line_width)


def _coco_polygon(points: np.ndarray, height: int, width: int) -> np.ndarray:
  from pycocotools import mask as coco_mask  # pylint: disable=import-outside-toplevel
  rles = coco_mask.frPyObjects([points.ravel().tolist()], height, width)
  return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


def _coco_rle(segmentation: dict, height: int, width: int) -> np.ndarray:
  """A COCO RLE, uncompressed (counts a list) or compressed (a string)."""
  from pycocotools import mask as coco_mask  # pylint: disable=import-outside-toplevel
  rle = segmentation
  if isinstance(segmentation['counts'], list):
    rle = coco_mask.frPyObjects(segmentation, *segmentation['size'])
  decoded = coco_mask.decode(rle).astype(bool)
  return _placed(decoded, height, width)


def _cvat_mask(left: int, top: int, box_width: int, box_height: int, rle: str, height: int,
               width: int) -> np.ndarray:
  """CVAT's mask: runs of 0s and 1s (0s first), row by row over its box."""
  runs = np.array([int(v) for v in rle.split(',') if v.strip()], np.int64)
  values = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
  box = np.zeros(box_width * box_height, bool)
  box[:min(len(values), box.size)] = values[:box.size]
  return _placed(box.reshape(box_height, box_width), height, width, top, left)


def _labelme_mask(left: int, top: int, png: str, height: int, width: int) -> np.ndarray:
  """LabelMe's mask shape: a base64 PNG whose nonzero pixels are the shape, its top-left
  corner at (left, top)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  with Image.open(io.BytesIO(base64.b64decode(png))) as picture:
    region = np.asarray(picture) != 0
  if region.ndim == 3:
    region = region.any(axis=-1)
  return _placed(region, height, width, top, left)


def _placed(region: np.ndarray, height: int, width: int, top: int = 0,
            left: int = 0) -> np.ndarray:
  """`region` on a [height, width] canvas with its top-left corner at (left, top)."""
  out = np.zeros((height, width), bool)
  rows = max(0, min(height - top, region.shape[0]))
  cols = max(0, min(width - left, region.shape[1]))
  out[top:top + rows, left:left + cols] = region[:rows, :cols]
  return out


def _pil_shape(kind: str, points: np.ndarray, height: int, width: int,
               line_width: int) -> np.ndarray:
  """LabelMe's own drawing (labelme.utils.shape_to_mask), and lines of `line_width`."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from PIL import ImageDraw  # pylint: disable=import-outside-toplevel
  canvas = Image.fromarray(np.zeros((height, width), np.uint8))
  pen = ImageDraw.Draw(canvas)
  xy = [tuple(p) for p in points.tolist()]
  if kind == 'circle' and len(xy) == 2:
    (cx, cy), (px, py) = xy
    radius = float(np.hypot(cx - px, cy - py))
    pen.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=1, fill=1)
  elif kind == 'rectangle' and len(xy) == 2:
    (x0, y0), (x1, y1) = xy
    pen.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
  elif kind == 'line':
    pen.line(xy, fill=1, width=line_width)
  else:
    pen.polygon(xy, outline=1, fill=1)
  return np.asarray(canvas, bool)


def self_intersects(points: np.ndarray) -> bool:
  """Whether two edges of a closed polygon that do not share a vertex cross."""
  count = len(points)
  if count < 4:
    return False
  start, end = points, np.roll(points, -1, axis=0)
  def side(a, b, c):  # Sign of the turn a -> b -> c, for every pair of edges.
    return np.sign((b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1])
                   - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0]))
  p, q = start[:, None], end[:, None]
  r, s = start[None, :], end[None, :]
  crosses = (side(p, q, r) * side(p, q, s) < 0) & (side(r, s, p) * side(r, s, q) < 0)
  index = np.arange(count)
  distance = np.abs(index[:, None] - index[None, :])
  apart = (distance > 1) & (distance != count - 1)  # Edges that share no vertex.
  return bool((crosses & apart).any())
