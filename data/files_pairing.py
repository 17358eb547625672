"""A user's own files found and paired: pictures with their masks by stem (or with their class
sub-folder), split by folders, lists or a stable hash of each stem. Problems are collected, not
raised, so check_data can list them all."""

import hashlib
import os
from typing import NamedTuple

from data import annotations
from data import folder_checks
from errors import DataError
import tasks


PICTURE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')
RASTER_SUFFIXES = ('.tif', '.tiff', '.npy', '.png')  # data.bands > 0 (data/rasters.py).
# Masks of rasters may be GeoTIFFs too (their first band; data/masks.py).
RASTER_MASK_SUFFIXES = PICTURE_SUFFIXES + ('.tif', '.tiff')
SPLITS = ('train', 'validation', 'test')


class Example(NamedTuple):
  name: str  # The stem: what check_data names and --mode=score reports.
  image: str  # The picture's path.
  target: object  # The mask's path, its ClassMasks, its annotations.Annotated, or a class index.


class ClassMasks(NamedTuple):
  """A multi-label picture's masks as annotators export them: a file per class, each in its
  class's sub-folder of the masks folder (None: no file, the class is absent)."""
  paths: tuple

  def __str__(self) -> str:
    return next(p for p in self.paths if p)


def picture_suffixes(bands: int) -> tuple:
  """The files that are pictures: photos (data.bands = 0), or rasters."""
  return RASTER_SUFFIXES if bands else PICTURE_SUFFIXES


def find_pictures(folder: str, suffixes: tuple = PICTURE_SUFFIXES) -> dict:
  """{path below `folder` without extension: [paths]} of every picture file (of `suffixes`)
  under `folder`, sub-folders too (hidden ones skipped), in sorted order; an unreadable folder
  raises OSError."""
  def refuse(error: OSError):
    raise error
  found = {}
  for root, dirs, files in os.walk(folder, onerror=refuse):
    dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
    for name in sorted(files):
      stem, suffix = os.path.splitext(name)
      if suffix.lower() in suffixes and not name.startswith('.'):
        key = os.path.relpath(os.path.join(root, stem), folder)
        found.setdefault(key, []).append(os.path.join(root, name))
  return found


def _walk(folder: str, field: str, suffixes: tuple = PICTURE_SUFFIXES) -> dict:
  """find_pictures of a configured folder, or a DataError naming the field."""
  if not folder or not os.path.isdir(folder):
    raise DataError(f'{field}={folder!r} is not a folder. Point it at the folder that holds '
                    'the pictures (or masks); see BUILD.md "Your own data".')
  try:
    return find_pictures(folder, suffixes)
  except OSError as e:
    raise DataError(f'{field}: the folder {e.filename!r} cannot be read ({e.strerror}).'
                    ) from None


def _strip(found: dict, suffix: str) -> dict:
  """Keys that end with `suffix`, without it (all keys when `suffix` is empty)."""
  if not suffix:
    return found
  return {key[:-len(suffix)]: paths for key, paths in found.items() if key.endswith(suffix)}


def read_list(path: str, field: str) -> list[str]:
  """Stems of a list file (one a line; extensions, blank lines, a BOM and CRLF tolerated)."""
  try:
    return [os.path.splitext(line.split()[0])[0] for line in folder_checks.read_list(path)]
  except (OSError, UnicodeDecodeError) as e:
    why = 'not UTF-8 text' if isinstance(e, UnicodeDecodeError) else e.strerror
    raise DataError(f'{field}={path!r} cannot be read ({why}): it must be a text file '
                    'of picture stems, one a line.') from None


def pair_split(files_config, split: str, problems: dict, bands: int = 0,
               class_folders_of: tuple = ()) -> list[Example]:
  """The split's (picture, mask) pairs (the mask: its path, its ClassMasks when the masks
  folder has a sub-folder for each of `class_folders_of`, or the picture's annotations);
  pictures without a mask, masks without a picture, listed stems without a picture and
  ambiguous stems go to `problems` (kind -> names)."""
  images_dir = getattr(files_config, f'{split}_images')
  masks_dir = getattr(files_config, f'{split}_masks')
  pictures = _walk(images_dir, f'data.files.{split}_images', picture_suffixes(bands))
  if files_config.mask_suffix and os.path.abspath(masks_dir) == os.path.abspath(images_dir):
    pictures = {k: v for k, v in pictures.items() if not k.endswith(files_config.mask_suffix)}
  pictures = _strip(pictures, files_config.image_suffix)
  if annotations.is_annotations(masks_dir):
    found = annotations.read_split(masks_dir)
    for kind, details in found.problems.items():
      problems.setdefault(kind, []).extend(details)
    masks = _annotated_pictures(found.pictures, pictures, images_dir)
  else:
    masks = _walk_masks(masks_dir, f'data.files.{split}_masks',
                        RASTER_MASK_SUFFIXES if bands else PICTURE_SUFFIXES,
                        files_config.mask_suffix, class_folders_of)
  for found in (pictures, masks):
    problems.setdefault('duplicate', []).extend(
        _named(p, stem) for stem, paths in found.items() if len(paths) > 1 for p in paths[1:])
  list_file = getattr(files_config, f'{split}_list')
  if list_file:
    stems = read_list(list_file, f'data.files.{split}_list')
    problems.setdefault('not_found', []).extend(s for s in stems if s not in pictures)
    stems = [s for s in dict.fromkeys(stems) if s in pictures]
  else:
    stems = sorted(pictures)
    problems.setdefault('no_picture', []).extend(
        _named(masks[s][0], s) for s in sorted(masks) if s not in pictures)
  problems.setdefault('no_mask', []).extend(pictures[s][0] for s in stems if s not in masks)
  return [Example(s, pictures[s][0], masks[s][0]) for s in stems if s in masks]


def _named(target, stem: str) -> str:
  """A mask's path, or the annotation file and picture of annotations, for a problem line."""
  if isinstance(target, annotations.Annotated):
    return f'{target.source}: {stem}' + (f' (subset {target.subset})' if target.subset else '')
  return str(target)


def _walk_masks(masks_dir: str, field: str, suffixes: tuple, mask_suffix: str,
                class_folders_of: tuple) -> dict:
  """{stem: [mask path]} of a masks folder, or {stem: [ClassMasks]} when it holds a sub-folder
  named after each of `class_folders_of` (a stem with a file in any of them)."""
  if not class_folders_of or not all(os.path.isdir(os.path.join(masks_dir or '', name))
                                     for name in class_folders_of):
    return _strip(_walk(masks_dir, field, suffixes), mask_suffix)
  per_class = [_strip(_walk(os.path.join(masks_dir, name), field, suffixes), mask_suffix)
               for name in class_folders_of]
  stems = sorted(set().union(*per_class))
  return {stem: [ClassMasks(tuple(found[stem][0] if stem in found else None
                                  for found in per_class))] for stem in stems}


def _annotated_pictures(annotated: dict, pictures: dict, images_dir: str) -> dict:
  """{picture key: [Annotated]} of a split's annotations, keyed as `pictures` are: by the name
  the annotation gives, or by its last part where that names one picture alone (COCO's
  file_name may carry its folder). Where the annotations name subsets (a CVAT project) and the
  pictures' folder is named like one (`images/Train`), only that subset's are the split's."""
  folder = os.path.basename(os.path.normpath(images_dir)).lower()
  if any(item.subset.lower() == folder for item in annotated.values()):
    annotated = {name: item for name, item in annotated.items()
                 if item.subset.lower() == folder}
  by_base = {}
  for key in pictures:
    by_base.setdefault(os.path.basename(key), []).append(key)
  keyed = {}
  for name, item in annotated.items():
    base = by_base.get(os.path.basename(name), [])
    keyed.setdefault(name if name in pictures or len(base) != 1 else base[0], []).append(item)
  return keyed


def class_folders(root: str, field: str) -> list[str]:
  """The class sub-folders of a classification tree, sorted (Keras' image_dataset_from_directory
  order): their names are the class names."""
  if not root or not os.path.isdir(root):
    raise DataError(f'{field}={root!r} is not a folder: for classification it holds one '
                    'sub-folder of pictures per class.')
  return sorted(d for d in os.listdir(root)
                if os.path.isdir(os.path.join(root, d)) and not d.startswith('.'))


def classify_split(root: str, class_names: tuple, field: str, problems: dict,
                   bands: int = 0) -> list[Example]:
  """(picture, class index) of every picture in the class sub-folders of `root`."""
  folders = class_folders(root, field)
  problems.setdefault('unknown_class', []).extend(
      os.path.join(root, f) for f in folders if f not in class_names)
  examples = []
  for index, name in enumerate(class_names):
    if os.path.isdir(os.path.join(root, name)):
      examples += [Example(os.path.join(name, key), paths[0], index)
                   for key, paths in sorted(_walk(os.path.join(root, name), field,
                                                  picture_suffixes(bands)).items())]
  return examples


def is_held_out(stem: str, fraction: float) -> bool:
  """Whether `stem` belongs to the validation hold-out: fixed by a hash of the stem alone, so a
  picture stays on its side whatever else the folder holds."""
  return int(hashlib.sha1(stem.encode()).hexdigest()[:8], 16) / 2**32 < fraction


def split_examples(data_config, problems: dict) -> dict:
  """{split: [Example]} for the splits the config names; without validation folders,
  data.validation_fraction of train is held out (at least one example)."""
  files = data_config.files
  splits = {}
  for split in SPLITS:
    if not getattr(files, f'{split}_images'):
      continue
    task = tasks.of_data(data_config)
    if task.per_pixel:
      splits[split] = pair_split(
          files, split, problems.setdefault(split, {}), data_config.bands,
          tuple(data_config.class_names) if task.classes_overlap else ())
    else:
      splits[split] = classify_split(getattr(files, f'{split}_images'), data_config.class_names,
                                     f'data.files.{split}_images',
                                     problems.setdefault(split, {}), data_config.bands)
  if 'validation' not in splits and data_config.validation_fraction and splits['train']:
    train = splits['train']
    held = [e for e in train if is_held_out(e.name, data_config.validation_fraction)]
    if not held:
      held = [min(train, key=lambda e: hashlib.sha1(e.name.encode()).hexdigest())]
    if len(held) < len(train):
      splits['validation'] = held
      splits['train'] = [e for e in train if e not in held]
  return splits
