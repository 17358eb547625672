"""A predicted mask's regions as polygons (GeoJSON): what a GIS or an annotation tool reads.

Pure functions of a mask and its grid: each class's connected regions (holes kept) traced by
rasterio.features.shapes, simplified by shapely within a tolerance of pixels, in the raster's
own coordinates (its transform and CRS) or, for a picture without a grid, in pixels (x right,
y down, a pixel's corner at whole numbers).
"""

import numpy as np


def polygons(mask: np.ndarray, class_names: tuple, transform=None, crs=None,
             tolerance_px: float = 1.0) -> dict:
  """A GeoJSON FeatureCollection of `mask`'s regions: class ids [H, W] (a region a class; the
  ignore label, where nothing was predicted, is none) or 0/1 labels [H, W, classes] (a class's
  regions where it is 1). Each
  feature's properties name its class and its pixels; `tolerance_px`: how far, in pixels, a
  simplified outline may stray (0: the pixels' own staircase edges)."""
  import affine  # pylint: disable=import-outside-toplevel
  from rasterio import features  # pylint: disable=import-outside-toplevel
  import shapely.geometry  # pylint: disable=import-outside-toplevel
  grid = transform if transform is not None else affine.Affine.identity()
  tolerance = tolerance_px * (abs(grid.a) + abs(grid.e)) / 2  # Pixels to the grid's units.
  planes = ([(index, mask[..., index] == 1) for index in range(mask.shape[-1])]
            if mask.ndim == 3 else [(index, mask == index) for index in range(len(class_names))])
  found = []
  for index, plane in planes:
    if not plane.any():
      continue
    for geometry, _ in features.shapes(plane.astype(np.uint8), mask=plane, transform=grid):
      shape = shapely.geometry.shape(geometry)
      pixels = int(round(shape.area / abs(grid.a * grid.e)))
      if tolerance:
        shape = shape.simplify(tolerance, preserve_topology=True)
      found.append({'type': 'Feature', 'geometry': shapely.geometry.mapping(shape),
                    'properties': {'class': class_names[index], 'class_id': index,
                                   'pixels': pixels}})
  collection = {'type': 'FeatureCollection', 'features': found}
  if crs is not None and crs.to_epsg():  # Legacy member GDAL and QGIS read (RFC 7946 drops it).
    collection['crs'] = {'type': 'name',
                         'properties': {'name': f'urn:ogc:def:crs:EPSG::{crs.to_epsg()}'}}
  return collection
