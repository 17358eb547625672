"""What check_data prints and training checks before its first step: per split, the examples,
each class's share, the ignored share, and every problem with up to five files and its fix."""

import json
import os

import numpy as np

from data import masks as masks_lib

SHOWN = 5  # Files named per problem.
# kind -> (what is wrong, the fix). {label_map} is filled in where a label map would help.
PROBLEMS = {
    'unreadable': ('files that cannot be decoded (corrupt, truncated or not a picture)',
                   'replace or remove them; pictures and masks may be JPEG, PNG, BMP or GIF.'),
    'no_mask': ('pictures without a mask', 'add each mask as <stem>{mask_suffix}.<png|...> in '
                'the masks folder (with annotations: the picture\'s entry in the COCO or CVAT '
                'file, or its LabelMe file), or name only pictures that have one in '
                'data.files.<split>_list.'),
    'no_picture': ('masks (or annotated pictures) without a picture', 'add the pictures, '
                   'remove the masks, or check data.files.mask_suffix / image_suffix (an '
                   'annotation names its picture by file name; its folder may differ).'),
    'image_id_twice': ('image ids used twice in an annotation file',
                       'give every image its own id (the second one is skipped).'),
    'undeclared_category': ('annotations whose category is not declared',
                            'declare it under "categories", or remove those annotations.'),
    'unknown_image': ('annotations of an image id the file does not list',
                      'list the image under "images", or remove those annotations.'),
    'unknown_label': ('annotation labels that are no class in data.class_names',
                      'add them to data.class_names (class 0 is what no shape covers), or '
                      'leave data.class_names empty to take the annotations\' own labels.'),
    'not_found': ('stems named in the list file without a picture',
                  'fix the list (one stem a line, no folder, no extension) or add the pictures.'),
    'duplicate': ('second files for one stem (e.g. a.jpg and a.png)',
                  'keep one file per stem; the first one found is used.'),
    'size': ('masks of another size than their picture',
             'masks must have their picture\'s height and width; resize them with nearest '
             'neighbour, never bilinear (that invents labels).'),
    'unmapped': ('masks with values that map to no class', '{label_map}'),
    'color': ('colour (RGB) masks without data.mask_colors',
              "set data.mask_colors to one (r, g, b) per class, in class order, e.g. "
              "data.mask_colors=((0, 0, 0), (255, 0, 0)); the colours found are listed "
              "above."),
    'unknown_class': ('class folders not in data.class_names',
                      'add them to data.class_names, or leave data.class_names empty to take '
                      'the folder names.'),
    'missing_class': ('classes that never occur in train',
                      'check data.class_names and data.label_map (or data.mask_colors), or add '
                      'training pictures that show them.'),
    'raster': ('rasters that cannot be read (each line says what the reader said)',
               'replace or remove them; data.bands reads GeoTIFF/TIFF (rasterio), .npy and '
               'PNG.'),
    'bands': ('pictures with other bands than data.bands',
              'give every picture the same bands, or set data.bands (and data.read_bands) to '
              'what they have.'),
    'nan': ('float rasters with NaN pixels and no data.nodata',
            'set data.nodata (a value that marks missing pixels; NaN pixels count as missing '
            'then too), or fill the NaNs.'),
    'nodata_tag': ('rasters whose own nodata tag marks pixels that data.nodata does not',
                   'set data.nodata to the tag\'s value, so those pixels are ignored in the masks '
                   'and become 0 after normalisation (gdalinfo shows the tag; gdal_edit.py '
                   '-unsetnodata removes a wrong one).'),
    'dtype': ('rasters of another sample type than most of the set',
              'convert them to the type of the rest (gdal_translate -ot): one value must mean '
              'one thing in every picture.'),
    'label_bands': ('multi-label masks whose band count is neither the class count nor 1',
                    'write one band per class of data.class_names, in its order (or one band of '
                    'bits, bit k for class k), or a file per class in a sub-folder named after '
                    'the class.'),
    'bits_above': ('multi-label bitmasks with a bit set above the class count',
                   'bit k is class k of data.class_names: add the missing classes, or clear '
                   'those bits (or set data.ignore_index to the value that means "ignore").'),
    'empty': ('splits without any usable example', 'point the split\'s folders at pictures and '
              'masks that pair, or remove the split.'),
}


class SplitReport:
  """Counts and problems of one split."""

  def __init__(self, problems: dict | None = None, num_classes: int = 0):
    self.examples = 0
    self.class_pixels = np.zeros(num_classes, np.int64)
    self.ignore_pixels = 0
    self.off_table = {}  # colour code -> pixels
    self.unmapped = {}  # raw value -> pixels
    self.raw_values = set()  # Every raw value seen (value masks).
    self.notes = {}  # Masks drawn from annotations: kind -> [detail] (data/annotations.py).
    self.overlap = np.zeros((num_classes, num_classes), np.int64)  # Pixels two classes share.
    self.label_pixels = 0  # Multi-label masks: every pixel (a pixel may count in many classes).
    self.palette = None
    self.problems = {kind: list(names) for kind, names in (problems or {}).items() if names}

  def add(self, scanned) -> None:
    """One ScannedExample: its problem, and the pixel counts of a pair that decoded (values
    that map to no class, and colours without a table, count in no class and not as ignored)."""
    mapped = scanned.mapped
    if mapped is not None:
      self.raw_values.update(mapped.values)
      for code, n in mapped.unmapped.items():
        self.unmapped[code] = self.unmapped.get(code, 0) + n
      for code, n in mapped.off_table.items():
        self.off_table[code] = self.off_table.get(code, 0) + n
    if scanned.problem:
      kind, detail = scanned.problem
      self.problems.setdefault(kind, []).append(detail)
      if kind not in ('unmapped', 'color'):
        return
    self.examples += 1
    if scanned.drawn is not None:
      for kind, details in scanned.drawn.notes.items():
        self.notes.setdefault(kind, []).extend(details)
      if not scanned.example.target.shapes:
        self.notes.setdefault('empty', []).append(scanned.example.name)
      self.overlap += scanned.drawn.overlap
    if mapped is None:  # Classification: one label per picture.
      self.class_pixels[scanned.example.target] += 1
      return
    if mapped.classes.ndim == 3:  # 0/1 labels per class.
      self._add_labels(mapped.classes, scanned.drawn is None)
      return
    counts = np.bincount(mapped.classes.ravel(), minlength=256)
    self.class_pixels += counts[:len(self.class_pixels)]
    lost = sum(mapped.unmapped.values()) + (counts[masks_lib.IGNORE] if mapped.is_color and
                                            scanned.problem else 0)
    self.ignore_pixels += int(counts[masks_lib.IGNORE] - lost)
    if scanned.palette is not None and self.palette is None:
      self.palette = scanned.palette

  def _add_labels(self, labels: np.ndarray, with_overlap: bool) -> None:
    """A multi-label mask: each class's pixels, the pixels ignored in every class, and (unless
    drawn, which counted them) the pixels each two classes share."""
    on = (labels == 1).reshape(-1, labels.shape[-1]).astype(np.int64)
    self.class_pixels += on.sum(0)
    self.ignore_pixels += int((labels == masks_lib.IGNORE).all(-1).sum())
    self.label_pixels += labels.shape[0] * labels.shape[1]
    if with_overlap:
      self.overlap += np.triu(on.T @ on, 1)

  def total(self) -> int:
    """Pixels the shares are of."""
    return self.label_pixels or int(self.class_pixels.sum()) + self.ignore_pixels


class DataReport:
  """Every split's SplitReport, with the class names."""

  def __init__(self, class_names: tuple):
    self.class_names = tuple(class_names)
    self.splits = {}
    self.suggestion = ''
    self.class_colors = None  # The data's own colours per class, when it has them.
    self.bands = None  # Rasters: the training split's per-band statistics and sample types.

  def split(self, name: str, problems: dict | None = None) -> SplitReport:
    self.splits[name] = SplitReport(problems, len(self.class_names))
    return self.splits[name]

  def finish(self, encoding: masks_lib.MaskEncoding) -> None:
    """Problems across splits (an empty split, a class never in train), the label map that
    would map every value seen, and the class colours (the table, or a "P" palette's)."""
    for name, split in self.splits.items():
      if not split.examples:
        split.problems.setdefault('empty', []).append(name)
    train = self.splits.get('train')
    if train is not None and train.examples:
      missing = [n for n, c in zip(self.class_names, train.class_pixels) if c == 0]
      if missing:
        train.problems['missing_class'] = missing
    if any(split.unmapped for split in self.splits.values()):
      values = sorted(set().union(*(s.raw_values for s in self.splits.values()))
                      - {encoding.ignore_index})
      suggestion = masks_lib.suggested_label_map(values, encoding.num_classes)
      lossy = (' So many values suggest lossy (JPEG) or bilinearly resized masks: save masks '
               'as PNGs of exact values.' if len(values) > 2 * encoding.num_classes + 8 else '')
      self.suggestion = (f"values seen ({len(values)}): {', '.join(map(str, values[:20]))}. "
                         + (f"Set data.label_map='{suggestion}' (value:class, in class order), "
                            if suggestion else "Map every value to a class with data.label_map="
                            "'value:class,...', ")
                         + 'or set data.ignore_index to the value that means "ignore".' + lossy)
    if encoding.colors:
      self.class_colors = [list(c) for c in encoding.colors]
    else:
      palette = next((s.palette for s in self.splits.values() if s.palette is not None), None)
      if palette is not None:
        table = masks_lib.lookup_table(encoding, len(palette))
        colors = {}
        for index, label in enumerate(table):
          if label != masks_lib.IGNORE and label not in colors:
            colors[int(label)] = palette[index].tolist()
        if len(colors) == len(self.class_names):
          self.class_colors = [colors[c] for c in range(len(self.class_names))]

  def check_sample_types(self, files: list) -> None:
    """A raster set whose files ((path, sample type) pairs) hold more than one sample type is
    a problem (one value would mean two things), named by the files of the rarer types."""
    types = (self.bands or {}).get('dtypes', {})
    if len(types) > 1:
      common = max(types, key=types.get)
      first = next(iter(self.splits.values()))
      first.problems['dtype'] = [f'{path} ({dtype}; most are {common})'
                                 for path, dtype in files if dtype != common]

  def has_problems(self) -> bool:
    return any(split.problems for split in self.splits.values())

  def format(self, mask_suffix: str = '') -> str:
    """The table a person can act on: counts and shares per split, then each problem."""
    names = self.class_names
    lines = ['split        examples  ' + '  '.join(f'{n[:12]:>12}' for n in names)
             + '      ignored']
    for name, split in self.splits.items():
      total = max(split.total(), sum(split.off_table.values()), 1)
      shares = '  '.join(f'{100 * c / total:>11.2f}%' for c in split.class_pixels)
      ignored = 100 * split.ignore_pixels / total
      lines.append(f'{name:<12} {split.examples:>8}  {shares}  {ignored:>10.2f}%')
      if split.off_table:
        top = sorted(split.off_table.items(), key=lambda kv: -kv[1])[:SHOWN]
        lines.append(f'  {name}: {100 * sum(split.off_table.values()) / total:.2f}% of pixels '
                     'have colours off data.mask_colors (blended edges?) and are ignored; most '
                     'common: ' + ', '.join(f'{masks_lib.code_color(c)} {100 * n / total:.2f}%'
                                            for c, n in top))
    if self.bands:
      lines += format_bands(self.bands)
    for name, split in self.splits.items():
      lines += _note_lines(name, split, names)
    problems = [(name, kind, found) for name, split in self.splits.items()
                for kind, found in split.problems.items()]
    if not problems:
      lines.append('No problems found.')
    for name, kind, found in problems:
      what, fix = PROBLEMS[kind]
      fix = fix.format(mask_suffix=mask_suffix, label_map=self.suggestion or
                       'map every value with data.label_map, or set data.ignore_index.')
      shown = ', '.join(str(f) for f in found[:SHOWN])
      more = f' and {len(found) - SHOWN} more' if len(found) > SHOWN else ''
      lines.append(f'PROBLEM {name}: {len(found)} {what}: {shown}{more}.\n  Fix: {fix}')
    return '\n'.join(lines)

  def to_json(self) -> dict:
    return {'class_names': list(self.class_names), 'class_colors': self.class_colors,
            'bands': self.bands,
            'splits': {name: {'examples': s.examples, 'class_pixels': s.class_pixels.tolist(),
                              'ignore_pixels': s.ignore_pixels, 'label_pixels': s.label_pixels,
                              'off_table': {str(k): v for k, v in s.off_table.items()}}
                       for name, s in self.splits.items()}}

  def write(self, path: str) -> None:
    with open(path + '.tmp', 'w') as f:
      json.dump(self.to_json(), f, indent=1)
    os.replace(path + '.tmp', path)

  @classmethod
  def read(cls, path: str) -> 'DataReport | None':
    """The report at `path`, or None when it is missing or damaged (the set is then checked
    and prepared again)."""
    try:
      with open(path) as f:
        saved = json.load(f)
      report = cls(tuple(saved['class_names']))
      report.class_colors = saved['class_colors']
      report.bands = saved.get('bands')
      for name, values in saved['splits'].items():
        split = report.split(name)
        split.examples = values['examples']
        split.class_pixels = np.array(values['class_pixels'], np.int64)
        split.ignore_pixels = values['ignore_pixels']
        split.label_pixels = values.get('label_pixels', 0)
        split.off_table = {int(k): v for k, v in values['off_table'].items()}
      return report
    except (OSError, ValueError, KeyError, TypeError):
      return None


# Masks drawn from annotations: what check_data notes (they are trained on as drawn).
NOTES = {
    'empty': 'pictures without any annotation, trained as background',
    'few_points': 'polygons of fewer than 3 points, not drawn',
    'outside': 'shapes reaching outside their picture, drawn where they are inside',
    'self_intersecting': 'self-intersecting polygons, drawn as the tool draws them',
    'points': 'point annotations, not drawn (a point has no area)',
    'no_area': 'shapes without an area (CVAT cuboids, skeletons), not drawn',
}


def _note_lines(name: str, split: SplitReport, class_names: tuple) -> list[str]:
  """NOTE lines of a split's drawn annotations, and the classes whose shapes overlap."""
  lines = []
  for kind, found in split.notes.items():
    shown = ', '.join(str(f) for f in found[:SHOWN])
    more = f' and {len(found) - SHOWN} more' if len(found) > SHOWN else ''
    lines.append(f'NOTE {name}: {len(found)} {NOTES[kind]}: {shown}{more}.')
  total = max(split.total(), 1)
  pairs = [(split.overlap[i, j], class_names[i], class_names[j])
           for i in range(len(class_names)) for j in range(i + 1, len(class_names))
           if split.overlap[i, j]]
  if pairs:
    lines.append(f'NOTE {name}: ' + ('pixels two classes share (multi-label): '
                                     if split.label_pixels else
                                     'shapes of two classes overlap (the later one is drawn; '
                                     'data.annotations.class_priority orders them): ')
                 + ', '.join(
                     f'{a}/{b} {100 * n / total:.2f}%' for n, a, b in sorted(pairs)[::-1]))
  return lines


def format_bands(bands: dict) -> list[str]:
  """Lines of the per-band table: each band's range, mean and std (what the model's first
  layer normalises by), the files' sample types and the missing share."""
  lines = [f'bands (training split; missing pixels {100 * bands["nodata_fraction"]:.2f}%; '
           f'sample types: {", ".join(sorted(bands["dtypes"]))}):',
           '  band            min            max           mean            std']
  for k, (low, high, mean, std) in enumerate(zip(bands['min'], bands['max'], bands['mean'],
                                                 bands['std'])):
    lines.append(f'  {k + 1:>4} {low:>14.6g} {high:>14.6g} {mean:>14.6g} {std:>14.6g}')
  return lines
