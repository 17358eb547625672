"""How well a heatmap points at a region: the energy-based pointing game of the CAM literature.

For a heatmap and a ground-truth region at the picture's resolution: `max` (the heatmap's peak
before scaling; 0 means blank), `energy_in_region` (the share of the heatmap's mass inside the
region) and `region_share` (the region's share of the picture). Over many pictures,
`energy_lift` = mean energy_in_region / mean region_share: 1.0 is no better than a uniform map.
"""

import numpy as np

from interpretability import gradcam


def region_scores(heatmap: np.ndarray, peak: float, region: np.ndarray,
                  counted: np.ndarray | None = None) -> dict:
  """`heatmap` (h, w) in [0, 1], resized (bilinear) to the boolean `region` (H, W); only the
  `counted` pixels (None: all) count, so ignored pixels weigh on neither share."""
  region = np.asarray(region, bool)
  counted = np.ones(region.shape, bool) if counted is None else np.asarray(counted, bool)
  resized = gradcam.resize_heatmaps(heatmap, *region.shape)
  total = float(resized[counted].sum())
  inside = float(resized[region & counted].sum())
  return {'max': float(peak),
          'energy_in_region': inside / total if peak > 0 and total > 0 else 0.0,
          'region_share': float((region & counted).sum() / max(counted.sum(), 1))}


def summarize(pictures: list[dict]) -> dict:
  """[{name: region_scores}] per picture -> {name: energy_lift, mean energy_in_region, mean
  region_share, non_blank (share of pictures whose heatmap is not all zero)}."""
  summary = {}
  for name in pictures[0] if pictures else ():
    scores = [p[name] for p in pictures]
    energy = float(np.mean([s['energy_in_region'] for s in scores]))
    share = float(np.mean([s['region_share'] for s in scores]))
    summary[name] = {'energy_lift': energy / share if share > 0 else 0.0,
                     'energy_in_region': energy, 'region_share': share,
                     'non_blank': float(np.mean([s['max'] > 0 for s in scores]))}
  return summary
