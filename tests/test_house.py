"""The house's shape, read from the source: who takes the whole config, and which specs hold
which sections (who imports whom: tests/test_code_map.py)."""

import ast
import dataclasses
import glob
import os

import pytest

from configs import base
from data import spec as data_spec
import specs
from tests.conftest import REPO
from training import settle

# Where the config is read whole: settling it (checked once, described as specs), the mode
# entry points that describe it at their door, and the record keepers (config.json's text,
# which the same-run check also reads, and HParams). Every other function takes specs.
SETTLING = {'specs.py:describe', 'tasks/__init__.py:of',
            'training/settle.py:settle_config', 'training/settle.py:_field_names',
            'training/settle.py:check_known_fields'} | {
                f'training/config_checks.py:{name}' for name in (
                    'check_task', 'check_config', '_check_names', '_check_ranges',
                    '_check_combinations', '_check_sizes', '_check_paths', '_check_own_data',
                    '_check_overlapping_classes')}
ENTRY_POINTS = {'training/loop.py:train', 'training/loop.py:evaluate',
                'training/continuous_eval.py:run', 'inference/predict.py:run',
                'inference/score.py:run', 'inference/export.py:run', 'inference/explain.py:run'}
RECORD_KEEPERS = {'records/checkpoints.py:config_record', 'records/summaries.py:scalar_fields'}
# Keras' own serialisation hooks name their argument `config` (a layer's, not ours).
KERAS_HOOKS = {'from_config', 'get_config'}


def _product_files() -> list[str]:
  paths = glob.glob(os.path.join(REPO, '*.py')) + glob.glob(os.path.join(REPO, '*', '*.py'))
  return sorted(os.path.relpath(p, REPO) for p in paths
                if not os.path.relpath(p, REPO).startswith(('tests', 'benchmarks', 'configs')))


def _tree(path: str) -> ast.Module:
  with open(os.path.join(REPO, path)) as f:
    return ast.parse(f.read())


def test_only_the_settling_code_entry_points_and_record_keepers_take_the_whole_config():
  taking = set()
  for path in _product_files():
    for node in ast.walk(_tree(path)):
      if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
          and node.name not in KERAS_HOOKS
          and 'config' in [a.arg for a in node.args.args + node.args.kwonlyargs]):
        taking.add(f'{path}:{node.name}')
  allowed = SETTLING | ENTRY_POINTS | RECORD_KEEPERS
  assert not taking - allowed, (
      'these take the whole config: give them the specs they read (specs.py) instead: '
      f'{sorted(taking - allowed)}')
  assert not allowed - taking, f'listed but not found: {sorted(allowed - taking)}'


def _dotted(record, prefix: str = '') -> set:
  names = set()
  for field in dataclasses.fields(record):
    names.add(prefix + field.name)
    if dataclasses.is_dataclass(field.type):
      names |= _dotted(field.type, f'{prefix}{field.name}.')
  return names


@pytest.mark.parametrize('section, record', [
    ('data', data_spec.Data), ('train', specs.Train), ('eval', specs.Eval),
    ('summaries', specs.Summaries), ('export', specs.Export), ('runtime', specs.Devices)])
def test_a_sections_spec_holds_every_field_of_the_section_and_nothing_else(section, record):
  fields = {field[len(section) + 1:] for field in settle._field_names(base.get_base_config())
            if field.startswith(section + '.')}
  assert _dotted(record) == fields


@pytest.mark.parametrize('section, record, resolved_elsewhere', [
    ('model', specs.Network, {'thresholds'}),  # The task's (tasks.of).
    ('predict', specs.Prediction, {'mode'})])  # Prediction.slides.
def test_the_network_and_prediction_specs_hold_every_field_their_code_reads(
    section, record, resolved_elsewhere):
  """The model builders read the Network spec's fields by name, as they read a model section in
  tests: a model field missing from it would fail only on the product's road."""
  fields = {field[len(section) + 1:] for field in settle._field_names(base.get_base_config())
            if field.startswith(section + '.')}
  assert fields - resolved_elsewhere <= _dotted(record)
