"""Mistakes and faults around the files a run reads and writes: the config file, the workdir,
output folders, a disk that fills while the data is prepared. Each ends as one line after
`Error:`, exit status 2, naming the path and the fix."""

import contextlib
import json
import os
import re
import subprocess

import pytest

from configs import base
from data import builders
from data import sources
from errors import ConfigError, DataError, UserError
from inference import predict
from tests.conftest import data_spec, main_in_process, run_main, small_config
from records import checkpoints
from records import workdir as workdir_lib
from training import config_checks
from training import settle

CONFIG_FILES = [
    ('missing.py', None, 'no such file'),
    ('syntax.py', 'def get_config(:\n  pass\n', 'line 1: syntax error'),
    ('broken_import.py', 'X = 1\nimport no_such_module_anywhere\n',
     "line 2: importing it failed with ModuleNotFoundError: No module named"),
    ('no_get_config.py', 'X = 1\n', 'has no get_config() function'),
]


@pytest.mark.parametrize('name, text, phrase', CONFIG_FILES)
def test_config_file_problems_name_the_file_and_line(tmp_path, name, text, phrase):
  path = tmp_path / name
  if text is not None:
    path.write_text(text)
  with pytest.raises(ConfigError, match=re.escape(f'--config={path}') + '.*' + re.escape(phrase)):
    settle.check_config_file(str(path))


def test_config_file_error_through_main_is_one_line(tmp_path, capsys):
  path = tmp_path / 'syntax.py'
  path.write_text('def get_config(:\n')
  status, stderr = main_in_process(capsys, f'--config={path}', f'--workdir={tmp_path / "w"}')
  assert status == 2
  assert f'Error: --config={path}, line 1: syntax error' in stderr
  assert 'Traceback' not in stderr and not (tmp_path / 'w').exists()


def test_workdir_that_is_a_file_or_under_one(tmp_path):
  (tmp_path / 'afile').write_text('x')
  with pytest.raises(UserError, match='--workdir: .*afile is a file, not a folder'):
    workdir_lib.ensure_writable_dir(str(tmp_path / 'afile'), '--workdir')
  with pytest.raises(UserError, match='--output: .*afile/out cannot be written: a part of the '
                                      'path is a file'):
    workdir_lib.ensure_writable_dir(str(tmp_path / 'afile' / 'out'), '--output')


@contextlib.contextmanager
def _tmpfs(path, options: str):
  """A small tmpfs at `path` (root only), or a skip saying why there is none."""
  os.makedirs(path, exist_ok=True)
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)],
                           capture_output=True, text=True, check=False)
  if mounted.returncode:
    pytest.skip(f'cannot mount a tmpfs here ({mounted.stderr.strip() or "not root"})')
  try:
    yield str(path)
  finally:
    subprocess.run(['umount', '--lazy', str(path)], check=False)  # Open files may hold it.


def test_read_only_workdir_through_main(tmp_path, capsys):
  with _tmpfs(tmp_path / 'ro', 'ro,size=1m') as read_only:
    status, stderr = main_in_process(capsys, '--config=configs/seg.py',
                                     '--config.data.source=synthetic', f'--workdir={read_only}/run')
  assert status == 2, stderr[-2000:]
  assert f'Error: --workdir: {read_only}/run cannot be written: the file system is read-only'\
      in stderr
  assert 'Traceback' not in stderr


def test_disk_full_while_preparing_data_is_clear_and_never_half_used(tmp_path, synthetic_folder):
  config = small_config(data__source='folder', data__folder=synthetic_folder)
  with _tmpfs(tmp_path / 'small', 'size=64k') as small:
    config.data.data_dir = small
    with pytest.raises(DataError, match=f'Writing oxford_iiit_pet_folder into {small}.* failed'
                                        ': .*No space left on device. Free disk space there or '
                                        'set --config.data.data_dir'):
      sources.prepared_builder(data_spec(config), str(tmp_path / 'w'))
    (key,) = os.listdir(small)  # The folder's own subfolder, where preparing failed.
    builder = builders.oxford_pets_folder.OxfordIiitPetFolder(
        folder=synthetic_folder, data_dir=os.path.join(small, key))
    assert not builder.is_prepared()  # The next run prepares again rather than reading half.
  config.data.data_dir = str(tmp_path / 'roomy')
  assert sources.num_examples(sources.prepared_builder(data_spec(config), str(tmp_path / 'w')),
                              'test') == 13


def test_data_dir_that_is_a_file_is_a_config_error(tmp_path):
  (tmp_path / 'afile').write_text('x')
  config = small_config(data__data_dir=str(tmp_path / 'afile'), settle=False)
  with pytest.raises(ConfigError, match="data.data_dir='.*afile' is a file: it must name a "
                                        'folder'):
    config_checks.check_config(config)


def test_images_folder_that_cannot_be_read(tmp_path, monkeypatch):
  (tmp_path / 'pictures').mkdir()
  def refuse(path):
    raise PermissionError(13, 'Permission denied', path)
  monkeypatch.setattr(os, 'scandir', refuse)  # Root reads every folder: fake the refusal.
  with pytest.raises(UserError, match="--images: the folder '.*pictures' cannot be read "
                                      r'\(Permission denied\)'):
    predict.loading.picture_paths(str(tmp_path / 'pictures'))


@pytest.mark.slow
def test_read_only_modes_work_beside_a_running_training(trained_run, tmp_path):
  """The trained workdir is locked here, as a training would hold it; predict reads it."""
  workdir, _, config = trained_run
  workdir_lib.lock(workdir)
  picture = sorted(os.listdir(os.path.join(config.data.folder, 'images')))[0]
  result = run_main('--config=configs/seg.py', f'--workdir={workdir}', '--mode=predict',
                    '--config.data.image_size=32',
                    f'--images={os.path.join(config.data.folder, "images", picture)}',
                    f'--output={tmp_path / "out"}')
  assert result.returncode == 0, result.stderr[-2000:]
  assert os.listdir(tmp_path / 'out')
  with pytest.raises(UserError, match='--output: .*cannot be written: a part of the path'):
    (tmp_path / 'afile').write_text('x')
    predict.run(config, workdir, os.path.join(config.data.folder, 'images', picture),
                str(tmp_path / 'afile' / 'out'))


def test_disk_full_while_writing_the_cache_is_clear(tmp_path, synthetic_folder):
  from training import loop  # pylint: disable=import-outside-toplevel
  with _tmpfs(tmp_path / 'small', 'size=64k') as small:
    config = small_config(data__source='folder', data__folder=synthetic_folder,
                          data__cache=os.path.join(small, 'cache'),
                          summaries__explain_every_epochs=0)
    with pytest.raises(UserError, match='Writing failed: .*No space left on device.*Free disk '
                                        'space or make that folder writable'):
      loop.train(config, str(tmp_path / 'w'))


def _leaves(values: dict, prefix: str = ''):
  for key, value in values.items():
    if isinstance(value, dict):
      yield from _leaves(value, f'{prefix}{key}.')
    else:
      yield prefix + key


def test_every_config_field_declares_whether_it_is_part_of_a_runs_identity():
  """A field added to configs/base.py goes in workdir.RUN_IDENTITY (a run resumes only with it
  unchanged) or workdir.RESUMABLE; every declaration names a field that exists."""
  fields = list(_leaves(json.loads(base.get_base_config().to_json_best_effort())))
  undeclared = [field for field in fields if workdir_lib.declaration(field) is None]
  assert not undeclared, f'declare these in records/workdir.py: {undeclared}'
  for name in workdir_lib.RUN_IDENTITY + workdir_lib.RESUMABLE:
    assert any(f == name or f.startswith(name + '.') for f in fields), name
  assert workdir_lib.declaration('model.thresholds') == 'resumable'
  assert workdir_lib.declaration('model.widths') == 'identity'
  config = small_config(model__name='xception_unet')
  saved = config.to_json_best_effort()
  for field, value in (('model.thresholds', 0.3), ('train.epochs', 9), ('runtime.precision',
                                                                          'float32')):
    changed = small_config(**{'model__name': 'xception_unet', field.replace('.', '__'): value})
    workdir_lib.check_same_run(checkpoints.config_record(changed), saved, 'w')  # Resumes.
  with pytest.raises(ConfigError, match=r'model: .* in the workdir'):
    workdir_lib.check_same_run(checkpoints.config_record(
        small_config(model__name='xception_unet', model__widths=(8, 16))), saved, 'w')
