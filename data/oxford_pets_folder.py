"""TFDS's own oxford_iiit_pet builder, pointed at an extracted copy of the official archives.

Reusing the official builder's `_info` and `_generate_examples` gives the folder source
exactly the official features (image, segmentation_mask, label, species, file_name,
head_bbox) and the official fixes for the set's mislabelled files, with no download.
"""

import os

import tensorflow_datasets as tfds
from tensorflow_datasets.datasets.oxford_iiit_pet import oxford_iiit_pet_dataset_builder

from errors import DataError

SPLIT_LISTS = {'train': 'trainval.txt', 'test': 'test.txt'}
REQUIRED_ENTRIES = ('images', 'annotations/trimaps', 'annotations/trainval.txt',
                    'annotations/test.txt')


def check_folder_layout(folder: str) -> None:
  """Fails with the list of missing parts when `folder` is not the official layout."""
  if not os.path.isdir(folder):
    raise DataError(f'data.folder={folder!r} is not a directory. Point it at a folder holding '
                    'images/ and annotations/ as extracted from the official archives.')
  missing = [e for e in REQUIRED_ENTRIES if not os.path.exists(os.path.join(folder, e))]
  if missing:
    raise DataError(f'data.folder={folder!r} lacks {", ".join(missing)}: it must hold the '
                    'official extracted layout (images/<name>.jpg, annotations/trimaps/'
                    '<name>.png, annotations/trainval.txt, annotations/test.txt).')


class OxfordIiitPetFolder(oxford_iiit_pet_dataset_builder.Builder):
  """oxford_iiit_pet read from `folder` instead of the download server."""

  def __init__(self, *, folder: str, list_files: dict | None = None, **kwargs):
    """`list_files` maps 'train'/'test' to list files (default: the folder's own)."""
    check_folder_layout(folder)
    self._folder = os.path.abspath(folder)
    annotations = os.path.join(self._folder, 'annotations')
    self._list_files = list_files or {name: os.path.join(annotations, list_file)
                                      for name, list_file in SPLIT_LISTS.items()}
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the folder holds the extracted archives.
    images = os.path.join(self._folder, 'images')
    annotations = os.path.join(self._folder, 'annotations')
    return [
        tfds.core.SplitGenerator(
            name=name,
            gen_kwargs=dict(images_dir_path=images, annotations_dir_path=annotations,
                            images_list_file=list_file))
        for name, list_file in self._list_files.items()
    ]
