"""The package's shape: no import cycle, a public API that resolves, a light import, commands that answer --help."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _scripts import console_scripts

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "keras_dssdn"


def _modules() -> dict:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return mods


def import_graph() -> dict:
    """module -> the package modules it imports (module level and inside functions: a lazy import still ties
    the two together)."""
    mods = _modules()

    def resolve(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges = {m: set() for m in mods}
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras_dssdn"):
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("keras_dssdn")]
            edges[module] |= {t for t in map(resolve, targets) if t and t != module}
    return edges


def cycles(edges: dict) -> list:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_cycle_detector_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, f"import cycles in the package: {found}"


#: Issue 23: no public function takes more than this many parameters (specs travel as one object).
MAX_PUBLIC_PARAMETERS = 10


def public_signatures() -> list:
    """``(parameter count, "module.Class.function")`` of every public function and method of the package
    (modules and names without a leading underscore, plus ``__init__`` of public classes); ``self`` / ``cls`` not
    counted, ``*args`` / ``**options`` counted as one each."""
    rows = []

    def visit(nodes, where):
        for node in nodes:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(node.body, f"{where}.{node.name}")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    not node.name.startswith("_") or node.name == "__init__"):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
                names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
                rows.append((len([n for n in names if n not in ("self", "cls")]), f"{where}.{node.name}"))

    for module, path in _modules().items():
        if not any(part.startswith("_") for part in module.split(".")):
            visit(ast.parse(path.read_text(encoding="utf-8")).body, module)
    return sorted(rows, reverse=True)


def test_no_public_function_takes_more_than_ten_parameters():
    rows = public_signatures()
    assert len(rows) > 300 and rows[0][0] >= 8  # the walk sees the package (its widest signatures take 8-10)
    too_long = [r for r in rows if r[0] > MAX_PUBLIC_PARAMETERS]
    assert not too_long, f"public functions with more than {MAX_PUBLIC_PARAMETERS} parameters: {too_long}"


def test_lower_layers_do_not_import_upper_ones():
    """layers/models/audio/params never reach up into training, tuning, deployment, inference or the CLI."""
    upper = ("keras_dssdn.train", "keras_dssdn.tune", "keras_dssdn.deploy", "keras_dssdn.inference",
             "keras_dssdn.cli")
    edges = import_graph()
    for module, targets in edges.items():
        if module.startswith(("keras_dssdn.layers", "keras_dssdn.models", "keras_dssdn.audio",
                              "keras_dssdn.params", "keras_dssdn.errors", "keras_dssdn.fileio")):
            bad = sorted(t for t in targets if t.startswith(upper))
            assert not bad, f"{module} imports {bad}"
        if module.startswith("keras_dssdn.inference"):
            assert not [t for t in targets if t.startswith("keras_dssdn.deploy")], f"{module} imports deploy"


def test_public_api_resolves_and_import_is_light():
    code = ("import sys, keras_dssdn; "
            "heavy = sorted(m for m in sys.modules if m.startswith(('keras_dssdn.deploy', 'keras_dssdn.tune', "
            "'keras_dssdn.data', 'keras_dssdn.cli', 'keras_dssdn.inference', 'keras_dssdn.train.trainer'))); "
            "missing = [n for n in keras_dssdn.__all__ if getattr(keras_dssdn, n, None) is None]; "
            "print(heavy, missing)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[] []"


def test_console_scripts_point_at_mains():
    scripts = console_scripts()
    assert {"dssdn-train", "dssdn-tune", "dssdn-evaluate", "dssdn-export", "dssdn-predict",
            "dssdn-complexity"} <= set(scripts)
    for name, target in scripts.items():
        module, func = target.split(":")
        assert module.startswith("keras_dssdn.cli."), name
        assert (REPO / Path(*module.split("."))).with_suffix(".py").is_file(), f"{name}: {module} missing"


# One command in the default tier (each start-up of TensorFlow costs seconds); all of them in the slow tier.
@pytest.mark.parametrize("name", [n if n == "dssdn-train" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(console_scripts())])
def test_console_script_answers_help(name):
    """The installed command (the venv's bin folder, from `pip install -e .`) prints its usage and exits 0."""
    exe = Path(sys.executable).parent / name
    assert exe.is_file(), f"{exe} is not installed: run `pip install -e .` (tools/setup_env.sh) again"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("usage:") and name.replace("dssdn-demo", "python -m keras_dssdn") in out.stdout
    # TensorFlow's C++ start-up lines do not reach the user of a command
    assert "cuda" not in out.stderr.lower() and "oneDNN" not in out.stderr, out.stderr[-1000:]
