"""The package's import graph has no cycles (module-level imports; lowres_jax only).

An import inside a function is how a module reaches a heavier or later layer lazily, and is
left out; a cycle among top-level imports is what makes import order matter and layers blur.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "lowres_jax"


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: pathlib.Path, modules: set[str]) -> set[str]:
  """The lowres_jax modules ``path`` imports at module level (``from pkg import sub`` counts
  as importing ``pkg.sub`` when that is a module)."""
  tree = ast.parse(path.read_text())
  package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
  found = set()
  for node in tree.body:
    statements = [node]
    if isinstance(node, ast.If):  # `if TYPE_CHECKING:` and friends still import at load.
      statements = node.body
    for statement in statements:
      if isinstance(statement, ast.Import):
        found |= {alias.name for alias in statement.names}
      elif isinstance(statement, ast.ImportFrom):
        base = statement.module or ""
        if statement.level:
          anchor = package.split(".")[:len(package.split(".")) - statement.level + 1]
          base = ".".join(anchor + ([base] if base else []))
        found.add(base)
        found |= {f"{base}.{alias.name}" for alias in statement.names}
  return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
  paths = sorted(PACKAGE.rglob("*.py"))
  modules = {module_name(p) for p in paths}
  return {module_name(p): top_level_imports(p, modules) - {module_name(p)} for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  state: dict[str, int] = {}  # 1: on the current path, 2: done.
  stack: list[str] = []

  def visit(node: str) -> list[str] | None:
    state[node] = 1
    stack.append(node)
    for target in sorted(graph.get(node, ())):
      # A submodule importing its own package's __init__ is how Python loads packages.
      if node.startswith(target + "."):
        continue
      if state.get(target) == 1:
        return stack[stack.index(target):] + [target]
      if target not in state:
        cycle = visit(target)
        if cycle:
          return cycle
    stack.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def test_the_finder_sees_a_cycle_and_a_clean_graph():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
  assert find_cycle({"p.sub": {"p"}, "p": {"p.sub"}}) is None


def test_lowres_jax_has_no_import_cycle():
  graph = import_graph()
  assert len(graph) > 50 and graph["lowres_jax.train.hparams"] >= {"lowres_jax.train.adapt"}
  cycle = find_cycle(graph)
  if cycle:
    pytest.fail("import cycle: " + " -> ".join(cycle))
