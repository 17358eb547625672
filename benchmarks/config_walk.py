"""How far the config travels: a static walk of the calls that hand it on, from an entry point.

Starting at `loop.train(config, ...)`, every call whose argument is the config, a section or
field of it (`config.train`, `cfg = config.train; cfg.steps`), or an object the callee reads
as `x.config` (a Job carrying it) is followed into the project function it
calls, depth first, each function once. A *stay* is a stretch of that walk spent in one file:
going into another file and coming back makes two. Printed as JSON: the stays, the distinct
files, the returns to a file already left, and the walk itself.

  python -m benchmarks.config_walk [--entry training/loop.py:train] [--param config]
"""

import argparse
import ast
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Module:
  """One project file: its functions and classes, and what its import names point at."""

  def __init__(self, path: str):
    self.path = path
    with open(os.path.join(ROOT, path)) as f:
      self.tree = ast.parse(f.read())
    self.functions, self.classes, self.aliases, self.imported = {}, {}, {}, {}
    for node in self.tree.body:
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        self.functions[node.name] = node
      elif isinstance(node, ast.ClassDef):
        self.classes[node.name] = node
      elif isinstance(node, ast.Import):
        for name in node.names:
          if _module_path(name.name):
            self.aliases[name.asname or name.name] = _module_path(name.name)
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        for name in node.names:
          sub = _module_path(f'{node.module}.{name.name}')
          if sub:
            self.aliases[name.asname or name.name] = sub
          elif _module_path(node.module):
            self.imported[name.asname or name.name] = (_module_path(node.module), name.name)


def _module_path(dotted: str) -> str | None:
  base = os.path.join(*dotted.split('.'))
  for candidate in (base + '.py', os.path.join(base, '__init__.py')):
    if os.path.isfile(os.path.join(ROOT, candidate)) and not candidate.startswith(
        ('.venv', 'tests')):
      return candidate
  return None


class Walk:

  def __init__(self):
    self.modules, self.visited, self.path = {}, set(), []

  def module(self, path: str) -> Module:
    if path not in self.modules:
      self.modules[path] = Module(path)
    return self.modules[path]

  def resolve(self, module: Module, func: ast.expr):
    """(file, function node or class node) a call goes to, when it is project code."""
    if isinstance(func, ast.Name):
      if func.id in module.functions or func.id in module.classes:
        return module.path, module.functions.get(func.id) or module.classes[func.id]
      if func.id in module.imported:
        path, name = module.imported[func.id]
        target = self.module(path)
        node = target.functions.get(name) or target.classes.get(name)
        return (path, node) if node else None
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
      path = module.aliases.get(func.value.id)
      if path:
        target = self.module(path)
        node = target.functions.get(func.attr) or target.classes.get(func.attr)
        return (path, node) if node else None
    return None

  def visit(self, path: str, node, tainted: set) -> None:
    key = (path, node.name)
    if key in self.visited:
      return
    self.visited.add(key)
    self.path.append(f'{path}:{node.name}')
    if isinstance(node, ast.ClassDef):
      init = next((n for n in node.body if isinstance(n, ast.FunctionDef)
                   and n.name == '__init__'), None)
      if init is None:
        return  # A dataclass: it stores what it is given.
      node = init
    module = self.module(path)
    tainted = set(tainted) | _assigned_from(node, tainted)
    for call in sorted((n for n in ast.walk(node) if isinstance(n, ast.Call)),
                       key=lambda n: (n.lineno, n.col_offset)):
      target = self.resolve(module, call.func)
      if not target or target[1] is node:
        continue
      params = _receiving(call, target[1], tainted)
      if params:
        self.visit(*target, params)
        self.path.append(f'{path}:{node.name}')


def _params(node) -> list:
  if isinstance(node, ast.ClassDef):
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef)
                 and n.name == '__init__'), None)
    if init is None:  # A dataclass: its fields, in order.
      return [s.target.id for s in node.body if isinstance(s, ast.AnnAssign)]
    return [a.arg for a in init.args.args[1:]]
  return [a.arg for a in node.args.args]


def _reads_config(name: str, node) -> bool:
  return any(isinstance(n, ast.Attribute) and n.attr == 'config' and isinstance(n.value, ast.Name)
             and n.value.id == name for n in ast.walk(node))


def _config_like(expr, tainted: set) -> bool:
  while isinstance(expr, (ast.Attribute, ast.Subscript)):
    if isinstance(expr, ast.Attribute) and expr.attr == 'config':
      return True
    expr = expr.value
  return isinstance(expr, ast.Name) and expr.id in tainted


def _assigned_from(node, tainted: set) -> set:
  """Local names bound to the config or a part of it (`cfg = config.train`)."""
  names = set(tainted)
  for statement in sorted((n for n in ast.walk(node) if isinstance(n, ast.Assign)),
                          key=lambda n: n.lineno):
    for target in statement.targets:
      pairs = (zip(target.elts, statement.value.elts)  # `a, b = config.a, config.b`
               if isinstance(target, ast.Tuple) and isinstance(statement.value, ast.Tuple)
               else [(target, statement.value)])
      names |= {t.id for t, value in pairs
                if isinstance(t, ast.Name) and _config_like(value, names)}
  return names - set(tainted)


def _receiving(call: ast.Call, callee, tainted: set) -> set:
  """The callee's parameters that receive the config, a part of it or a carrier of it."""
  params, received = _params(callee), set()
  offset = 1 if params[:1] == ['self'] else 0
  for i, arg in enumerate(call.args):
    if i + offset < len(params) and (_config_like(arg, tainted) or (
        isinstance(arg, ast.Name) and _reads_config(params[i + offset], callee))):
      received.add(params[i + offset])
  for keyword in call.keywords:
    if keyword.arg in params and _config_like(keyword.value, tainted):
      received.add(keyword.arg)
  return received


def stays(walk_path: list) -> list:
  """The walk's files with consecutive repeats merged: one entry per stay."""
  files = [step.split(':')[0] for step in walk_path]
  return [f for i, f in enumerate(files) if i == 0 or files[i - 1] != f]


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--entry', default='training/loop.py:train')
  parser.add_argument('--param', default='config')
  args = parser.parse_args()
  path, name = args.entry.split(':')
  walk = Walk()
  module = walk.module(path)
  walk.visit(path, module.functions.get(name) or module.classes[name], {args.param})
  files = stays(walk.path)
  print(json.dumps({'entry': args.entry, 'stays': len(files), 'files': len(set(files)),
                    'returns_to_a_file_left': len(files) - len(set(files)),
                    'functions': len(walk.visited), 'stays_in_order': files}, indent=1))


if __name__ == '__main__':
  main()
