"""The package's layout: folders are layers and imports only run down, no import cycle, config is
a leaf, models never import config."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import text2sign

PACKAGE = Path(text2sign.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> set[str]:
    """Every text2sign module ``path`` imports: at top level, inside functions, or under
    TYPE_CHECKING (a cycle held apart by a local import is still a cycle)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != "text2sign":
                found.add(name)
    return found - {module_name(path)}


GRAPH = {name: imports(path) for name, path in MODULES.items()}

# The layers, bottom up (STYLE.md habit 16; README "Layout"): each folder of the package is in
# one layer, and a module may import its own layer and those below, never one above. The package's
# face (text2sign/__init__.py) and __main__ stand on top; nothing else lies loose in text2sign/.
LAYERS = {
    1: ("the base", ["core"]),
    2: ("models, the diffusion process, data", ["models", "diffusion", "data"]),
    3: ("the model folder", ["model_folder"]),
    4: ("training, evaluation", ["training", "evaluation"]),
    5: ("applications", ["apps", "serve"]),
    6: ("command line", ["cli", "__main__", ""]),  # "": the package's face, text2sign/__init__
}
FOLDERS = {folder: number for number, (_, folders) in LAYERS.items() for folder in folders}


def folder(name: str) -> str:
    """The top folder of module ``name`` (text2sign.X.Y -> X; a loose module is its own)."""
    return name.removeprefix("text2sign").removeprefix(".").partition(".")[0]


def layer(name: str) -> int:
    """The layer of module ``name``: the layer of its folder."""
    assert folder(name) in FOLDERS, f"{name} lies in no folder of LAYERS: move it into one"
    return FOLDERS[folder(name)]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{name} (layer {layer(name)}) imports {dep} (layer {layer(dep)})"
            for name, deps in sorted(graph.items()) for dep in sorted(deps)
            if layer(dep) > layer(name)]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    assert len(GRAPH) > 40  # the walk found the package
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_every_module_has_a_layer_and_imports_only_run_down():
    assert upward_imports(GRAPH) == []


def test_the_layer_check_sees_an_upward_import():
    assert layer("text2sign.data.cache") == 2 and layer("text2sign.cli.data") == 6
    assert layer("text2sign") == 6 and layer("text2sign.core.report") == 1
    assert upward_imports({"text2sign.model_folder.card": {"text2sign.evaluation.evaluate"}}) \
        == ["text2sign.model_folder.card (layer 3) imports text2sign.evaluation.evaluate "
            "(layer 4)"]


def test_every_folder_is_a_layer_and_nothing_lies_loose():
    """The folders are the layers: each package folder is in LAYERS (and each of LAYERS exists),
    and text2sign/ itself holds only its face and __main__."""
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(FOLDERS) - {"", "__main__"}
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py"]


def test_every_folder_says_what_it_is_and_what_it_may_import():
    for name in set(FOLDERS) - {"", "__main__"}:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and ("import" in doc), f"{name}/__init__.py: say what it is and may import"


def test_no_two_files_share_a_name():
    names: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py":
            names.setdefault(path.name, []).append(str(path.relative_to(PACKAGE)))
    assert {n: p for n, p in names.items() if len(p) > 1} == {}


def test_no_two_folders_import_each_other():
    """Folders on one layer (training and evaluation; apps and serve) import one way only: the
    folders' graph has no cycle either."""
    folders: dict[str, set[str]] = {}
    for name, deps in GRAPH.items():
        folders.setdefault(folder(name), set()).update(folder(d) for d in deps)
    folders = {f: deps - {f} for f, deps in folders.items()}
    assert find_cycle(folders) is None, " -> ".join(find_cycle(folders))


def test_the_cycle_check_sees_local_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


LEAVES = {"text2sign.core.files", "text2sign.core.units", "text2sign.core.hub"}


def test_config_is_a_leaf_and_models_never_import_config():
    assert GRAPH["text2sign.core.config"] <= {"text2sign.core.files"}
    for name, deps in GRAPH.items():
        if name.startswith("text2sign.models"):
            assert not deps & {"text2sign.core.config", "text2sign.model_folder.build"}, name
            # models import models, and the stdlib-only leaves: files (hashes, atomic writes),
            # units (what a text is made of, which the duration model times) and hub (what a
            # Hub id is, whether to go online)
            assert all(d.startswith("text2sign.models") or d in LEAVES for d in deps), (name, deps)
    assert all(GRAPH[leaf] == set() for leaf in LEAVES)


def test_device_is_a_leaf():
    """The one home of device choice and memory figures, importable from any layer."""
    assert GRAPH["text2sign.core.device"] == set()


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module imported as the first of the package (the others purged from sys.modules
    before each), in one fresh interpreter; ``config`` pulls in neither torch nor a model."""
    script = f"""
import sys
for name in {sorted(set(MODULES) - {"text2sign.__main__"})!r}:
    for loaded in [m for m in sys.modules if m == "text2sign" or m.startswith("text2sign.")]:
        del sys.modules[loaded]
    __import__(name)
for loaded in [m for m in sys.modules if m.startswith(("text2sign", "torch"))]:
    del sys.modules[loaded]
import text2sign.core.config
assert "torch" not in sys.modules, "config imports torch"
assert not [m for m in sys.modules if m.startswith("text2sign.models")], "config imports models"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_cli_parser_imports_no_torch():
    """`text2sign --help` builds every command's parser without importing torch (seconds)."""
    script = """
import sys
from text2sign.cli import build_parser
build_parser()
assert "torch" not in sys.modules, "building the CLI's parser imports torch"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
