"""The package's layout keeps the promises docs/DESIGN.md makes to a newcomer: no import cycle, no
router importing the app or another router, no module much over 700 lines, no block of code
written twice."""

from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from collections import defaultdict
from pathlib import Path

import soundatlas

PACKAGE = Path(soundatlas.__file__).parent
MAX_LINES = 750  # "no module much over 700 lines"
MIN_BLOCK = 6  # lines that make a repeated block


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(n) for n in ast.walk(node))
    return inside


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package's modules it imports, anywhere in its code (inside functions too:
    an import deferred to dodge a cycle is still a cycle); ``if TYPE_CHECKING:`` blocks aside."""
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets.add(base)
                targets.update(f"{base}.{a.name}" for a in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


@functools.cache
def _package_graph() -> dict[str, set[str]]:
    """The package's own import graph, read once for the tests below."""
    return import_graph(_modules())


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle():
    graph = _package_graph()
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100  # the graph was read
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from toy.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..c import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nimport toy.a\n"
                              "if TYPE_CHECKING:\n    import toy.d\n")
    (pkg / "d.py").write_text("import toy.c\n")
    graph = import_graph(_modules(pkg))
    assert cycles(graph) == [["toy.a", "toy.c", "toy.sub.b"]]


def test_routers_import_neither_the_app_nor_each_other():
    graph = _package_graph()
    routers = [m for m in graph if m.startswith("soundatlas.web.routers.")]
    assert len(routers) >= 5
    for router in routers:
        assert "soundatlas.web.app" not in graph[router], router
        assert not [m for m in graph[router] if m.startswith("soundatlas.web.routers.")], router


def test_the_edges_depend_on_the_stages_never_the_other_way():
    graph = _package_graph()
    edges = ("soundatlas.cli", "soundatlas.web")
    wrong = {(m, t) for m, targets in graph.items() for t in targets
             if t.startswith(edges) and not m.startswith(edges) and m != "soundatlas.__main__"}
    wrong |= {(m, t) for m, targets in graph.items() for t in targets
              if m.startswith("soundatlas.web") and t.startswith("soundatlas.cli")}
    assert wrong == set()


def test_no_module_is_much_over_700_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def _code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line with white space folded) of the lines that are code: docstrings,
    comments, imports, ``__all__`` and lone brackets left out."""
    tree = ast.parse(text)
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            skip.update(range(body[0].lineno, body[0].end_lineno + 1))
        if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)):
            skip.update(range(node.lineno, node.end_lineno + 1))
    comment_at = {tok.start[0]: tok.start[1]
                  for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                  if tok.type == tokenize.COMMENT}
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if number in skip:
            continue
        line = re.sub(r"\s+", " ", line[: comment_at.get(number, len(line))].strip())
        if line and not re.fullmatch(r"[()\[\]{}:,]+", line):
            out.append((number, line))
    return out


def repeated_blocks(files: dict[str, str], n: int = MIN_BLOCK) -> list[list[tuple[str, int]]]:
    """Places (file, first line) where the same ``n`` code lines stand more than once."""
    seen: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
    for name, text in files.items():
        lines = _code_lines(text)
        for k in range(len(lines) - n + 1):
            seen[tuple(line for _, line in lines[k : k + n])].append((name, lines[k][0]))
    return [places for places in seen.values() if len(places) > 1]


def test_no_block_of_six_lines_stands_twice():
    files = {name: path.read_text() for name, path in _modules().items()}
    assert repeated_blocks(files) == []


def test_the_repeat_finder_finds_a_repeat():
    block = "\n".join(f"    x{i} = compute({i})  # step {i}" for i in range(6))
    files = {"a": f'"""doc"""\nimport os\n\ndef f():\n{block}\n    return x0\n',
             "b": f"def g():\n    '''other'''\n{block.replace('  # step', '  # stage')}\n",
             "c": "\n".join(f"y{i} = {i}" for i in range(5))}
    assert repeated_blocks(files) == [[("a", 5), ("b", 3)]]


def test_reading_an_atlas_and_model_configs_does_not_load_torch():
    """`info`, `models`, `serve` and the command line's checks start in a fraction of a second:
    what only reads the atlas, model configs, CQT parameters or neighbourhood specs stays free of
    torch (1.5 s to import), which loads with the first network or transform."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import soundatlas.atlas, soundatlas.artifact, soundatlas.cqt_params, soundatlas.frames\n"
            "import soundatlas.neighbourhoods, soundatlas.cli, soundatlas.web.app\n"
            "from soundatlas.neighbourhoods import parse_neighbourhood\n"
            "parse_neighbourhood('instrument:1,input-knn:1,augment-pair:1')\n"
            "print('torch' in sys.modules)\n"
            "import soundatlas.cqt\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stdout + out.stderr


def test_every_public_function_class_and_method_has_a_docstring():
    """Read as ``help()`` shows it: an override may take its base's docstring."""
    import importlib
    import inspect
    import pkgutil

    missing = []
    for info in pkgutil.walk_packages(soundatlas.__path__, "soundatlas."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if not inspect.getdoc(obj):
                missing.append(f"{module.__name__}.{name}")
            for attr, value in (vars(obj).items() if inspect.isclass(obj) else ()):
                func = getattr(value, "__func__", value)
                if attr.startswith("_") or not (inspect.isfunction(func)
                                                or isinstance(value, property)):
                    continue
                if not (inspect.getdoc(getattr(obj, attr)) or getattr(value, "__doc__", None)):
                    missing.append(f"{module.__name__}.{name}.{attr}")
    assert not missing, "no docstring: " + ", ".join(missing)
