"""The shape of the project: serving and indexing never load training code or Lightning."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_app_and_indexer_import_without_training_or_lightning() -> None:
    code = (
        "import sys, app.main, app.routes.cars, app.routes.search, app.routes.health, "
        "indexer.build, indexer.index, indexer.engines.edge.store, "
        "indexer.engines.qdrant_server.store, carembed.artifact, carembed.backends, carsearch.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('training', 'lightning', 'pytorch_lightning', 'pytorch_metric_learning'))\n"
        "assert not bad, bad\n"
        "app.main.create_app()\n"  # building the app touches nothing either
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'lightning'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_model_package_knows_no_vector_store() -> None:
    """``carembed`` is the servable model only: no Qdrant, no ``indexer``."""
    import re
    from pathlib import Path

    root = Path(__file__).parent.parent / "carembed"
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) (qdrant|indexer|app)", text, re.M), path


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of each import in the file: ``from m import a, b`` and ``import m``."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return found


def test_the_index_is_used_through_its_public_api() -> None:
    """``app``, ``carsearch`` and ``training`` import what ``indexer/__init__.py`` names, never
    its modules; the index's own modules never import that facade."""
    import indexer

    root = Path(__file__).parent.parent
    used: set[str] = set()
    for package in ("app", "carsearch", "training"):
        for path in (root / package).rglob("*.py"):
            for module, names in _imports(path):
                assert not module.startswith("indexer."), (path, module)
                if module == "indexer":
                    used.update(names)
    assert used, "no use of the index found"
    assert used <= set(indexer.__all__), used - set(indexer.__all__)
    for path in (root / "indexer").rglob("*.py"):
        for module, names in _imports(path):
            assert module != "indexer" or not set(names) & set(indexer.__all__), (path, names)


def test_route_modules_are_leaves_of_the_service() -> None:
    """Routes use the service's modules; only ``app.main`` mounts them, and no service module
    reaches into a route."""
    root = Path(__file__).parent.parent / "app"
    for path in root.rglob("*.py"):
        if path.parent.name == "routes" or path.name == "main.py":
            continue
        for module, _ in _imports(path):
            assert not module.startswith("app.routes"), (path, module)


def test_the_layers_hold() -> None:
    """import-linter's contracts (pyproject.toml): carsearch > app | training > indexer >
    carembed, and the model's runtime never imports its quantization."""
    from pathlib import Path

    lint = Path(sys.executable).parent / "lint-imports"
    root = Path(__file__).parent.parent
    result = subprocess.run([str(lint)], capture_output=True, text=True, cwd=root, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


@pytest.mark.slow
def test_no_module_imports_itself_round_a_cycle() -> None:
    """No import cycle between modules, imports for type checking alone included: a part never
    names the facade that builds it."""
    import grimp

    graph = grimp.build_graph(
        "carembed", "indexer", "app", "carsearch", "training", exclude_type_checking_imports=False
    )
    imports = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    done: set[str] = set()

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(imports[module]):
            found = cycle_from(imported, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    cycles = [c for m in sorted(imports) if (c := cycle_from(m, []))]
    assert not cycles, cycles[0]


@pytest.mark.slow
def test_every_module_imports_first() -> None:
    """Each module imports in an interpreter that has loaded none of the project's modules yet
    (a cycle that one import order hides fails another)."""
    code = (
        "import importlib, pkgutil, sys\n"
        "ours = ('carembed', 'indexer', 'app', 'carsearch', 'training')\n"
        "names = [m.name for p in ours for m in pkgutil.walk_packages("
        "importlib.import_module(p).__path__, p + '.') if not m.name.endswith('__main__')]\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] in ours]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as exc:\n"
        "        failed.append(f'{name}: {exc}')\n"
        "assert len(names) > 100, names\n"
        "assert not failed, failed\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
