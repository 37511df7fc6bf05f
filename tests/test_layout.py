"""The package's layout: imports point one way, base <- components <- measure <- runtime <- CLIs, with no cycle, and
vae-compare runs without torch. Read from the source (AST): module- and function-level imports alike, imports under
`if TYPE_CHECKING:` aside."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "vae_lab"

# Every module of vae_lab/ in one layer; a module may import its own layer and those below it. A new module must be
# placed here (the test says so), which is the point: where it goes is a decision.
LAYERS = {
    "base": ("vae_lab", "vae_lab.checks", "vae_lab.codelength", "vae_lab.nested", "vae_lab.progress",
             "vae_lab.results", "vae_lab.rundir"),
    "components": ("vae_lab.data", "vae_lab.decoders", "vae_lab.encoders", "vae_lab.kl_schedules",
                   "vae_lab.likelihoods", "vae_lab.model", "vae_lab.networks", "vae_lab.penalties", "vae_lab.priors",
                   "vae_lab.schedulers", "vae_lab.stacking"),
    "measure": ("vae_lab.measure",),
    "runtime": ("vae_lab.runtime",),
    "cli": ("vae_lab.train", "vae_lab.train_command", "vae_lab.evaluate", "vae_lab.compare"),
}
RANK = {name: i for i, name in enumerate(LAYERS)}


def module_name(path):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py")) if "configs" not in p.parts}


def layer(module):
    """The layer of `module`: the one whose longest listed prefix it has."""
    best = max(((prefix, name) for name, prefixes in LAYERS.items() for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), key=lambda p: len(p[0]), default=None)
    return best[1] if best else None


def _type_checking(node):
    test = node.test
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or \
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _script_entry(node):
    """`if __name__ == "__main__":` runs only when the file is run as a script (python -m), as the module __main__,
    not as itself: what it imports is no import of the module's."""
    test = node.test
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators))


def imports(path, known):
    """vae_lab modules `path` imports anywhere in it (TYPE_CHECKING blocks aside); `from pkg import mod` counts as
    the module where one of that name exists."""
    found = set()

    def visit(node):
        if isinstance(node, ast.If) and (_type_checking(node) or _script_entry(node)):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "vae_lab")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vae_lab":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def import_graph():
    known = modules()
    return {m: {i for i in imports(p, known) if i in known} - {m} for m, p in known.items()}


def _parents(module):
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def upward(graph):
    """(importer, imported) pairs that point from a lower layer to a higher one."""
    return sorted((a, b) for a, bs in graph.items() for b in bs
                  if b not in _parents(a) and RANK[layer(b)] > RANK[layer(a)])


def cycles(graph):
    """One cycle (a list of modules) per strongly connected group of more than one module."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_every_module_has_a_layer():
    unplaced = [m for m in modules() if layer(m) is None]
    assert not unplaced, f"place these modules in a layer of tests/test_layout.py's LAYERS: {unplaced}"


def test_imports_point_one_way():
    assert upward(import_graph()) == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_checks_find_a_planted_upward_import_and_cycle():
    graph = import_graph()
    graph["vae_lab.priors"] = {*graph["vae_lab.priors"], "vae_lab.runtime.build"}  # a component importing runtime
    assert ("vae_lab.priors", "vae_lab.runtime.build") in upward(graph)
    assert any("vae_lab.priors" in c and "vae_lab.runtime.build" in c for c in cycles(graph))


def test_function_level_and_type_checking_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vae_lab import train\n"
                      "def f():\n    from vae_lab.runtime import build\n    import vae_lab.evaluate\n"
                      "if __name__ == '__main__':\n    from vae_lab.train import main\n")
    known = {"vae_lab.runtime.build", "vae_lab.runtime", "vae_lab.evaluate", "vae_lab.train"}
    assert imports(source, known) == {"vae_lab.runtime.build", "vae_lab.evaluate"}


@pytest.mark.slow
@pytest.mark.parametrize("module", ["vae_lab.compare", "vae_lab.compare.table", "vae_lab.compare.plots", "vae_lab.results", "vae_lab.rundir"])
def test_vae_compare_imports_no_torch(module):
    """Comparing hundreds of runs must stay fast and work where torch is not installed."""
    code = f"import sys, {module}; bad = [m for m in ('torch', 'numpy') if m in sys.modules]; sys.exit(str(bad) if bad else 0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr or out.stdout
