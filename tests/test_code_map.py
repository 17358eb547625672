"""BUILD.md's Code map is the rule for imports: every product module imports only the packages
its row lists, so the map cannot go stale and nothing imports upward."""

import ast
import glob
import os
import re

from tests.conftest import REPO

PACKAGES = ('main', 'configs', 'errors', 'tasks', 'sizes', 'data', 'modeling', 'interpretability',
            'specs', 'records', 'training', 'inference', 'launch', 'benchmarks', 'tests')


def allowed_imports(build_md: str) -> dict:
  """{package: packages it may import, or None for anything} from the Code map table."""
  section = build_md.split('## Code map', 1)[1]
  allowed = {}
  for row in re.findall(r'^\| (`.*?) \| .*? \| (.*?) \|$', section, re.M):
    owners = [re.sub(r'(\.py|/)$', '', name) for name in re.findall(r'`([^`]+)`', row[0])]
    rule = row[1].strip()
    may = None if rule.startswith('anything') else set(
        re.findall(r'`([^`]+)`', re.sub(r'\([^)]*\)', '', rule)))
    for owner in owners:
      allowed[owner] = may
  return allowed


def _package(path: str) -> str:
  top = path.split(os.sep)[0]
  return top[:-3] if top.endswith('.py') else top


def imports(root: str) -> dict:
  """{module path: the project's packages it imports} for every product module."""
  found = {}
  for path in glob.glob('**/*.py', root_dir=root, recursive=True):
    if path.startswith(('.venv', 'tests')):
      continue
    with open(os.path.join(root, path), encoding='utf-8') as f:
      tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        names |= {alias.name.split('.')[0] for alias in node.names}
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names.add(node.module.split('.')[0])
    found[path] = {n for n in names if n in PACKAGES and n != _package(path)}
  return found


def violations(root: str) -> list[str]:
  with open(os.path.join(root, 'BUILD.md'), encoding='utf-8') as f:
    allowed = allowed_imports(f.read())
  problems = []
  for path, used in sorted(imports(root).items()):
    package = _package(path)
    if package not in allowed:
      problems.append(f'{path}: package {package} has no row in the Code map')
      continue
    if allowed[package] is not None and used - allowed[package]:
      problems.append(f'{path} imports {sorted(used - allowed[package])}, which the Code map '
                      f'does not allow {package} (allowed: {sorted(allowed[package])})')
  return problems


def test_every_import_follows_the_code_map():
  assert violations(REPO) == []


def test_the_map_is_read_and_a_forbidden_import_is_caught(tmp_path):
  with open(os.path.join(REPO, 'BUILD.md'), encoding='utf-8') as f:
    build_md = f.read()
  allowed = allowed_imports(build_md)
  assert allowed['data'] == {'errors', 'tasks', 'sizes'}
  assert allowed['configs'] == set() and allowed['benchmarks'] is None
  (tmp_path / 'BUILD.md').write_text(build_md)
  (tmp_path / 'data').mkdir()
  (tmp_path / 'data' / 'upward.py').write_text('from training import train\nimport errors\n')
  assert violations(str(tmp_path)) == [
      "data/upward.py imports ['training'], which the Code map does not allow data "
      "(allowed: ['errors', 'sizes', 'tasks'])"]
