"""The shape of the code, as facts anyone can check: files and lines per package, the largest
files and functions, the longest import chain, import cycles (imports for type checking alone
counted) and type-only imports.

    python benchmarks/layout.py

Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import ast
import json
import logging
import sys
from functools import cache
from pathlib import Path

import grimp

PACKAGES = ("carembed", "training", "indexer", "app", "carsearch")
ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("layout")


def _functions(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno:
            found.append(
                (node.end_lineno - node.lineno + 1, f"{path.relative_to(ROOT)}:{node.name}")
            )
    return found


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    logger.setLevel(logging.INFO)
    sizes: dict[str, dict[str, int]] = {}
    files: list[tuple[int, str]] = []
    functions: list[tuple[int, str]] = []
    for package in PACKAGES:
        paths = sorted((ROOT / package).rglob("*.py"))
        lines = [len(p.read_text().splitlines()) for p in paths]
        sizes[package] = {"files": len(paths), "lines": sum(lines)}
        files += [(n, str(p.relative_to(ROOT))) for n, p in zip(lines, paths, strict=True)]
        for path in paths:
            functions += _functions(path)
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=False)
    runtime = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    imports = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    type_only = sum(
        len(imports[m] - set(runtime.find_modules_directly_imported_by(m))) for m in imports
    )

    @cache
    def longest(module: str) -> tuple[str, ...]:
        chains = [longest(m) for m in imports[module]]
        return (module, *max(chains, key=len, default=()))

    sys.setrecursionlimit(10_000)
    chain = max((longest(m) for m in imports), key=len)  # raises RecursionError on a cycle
    for package, size in sizes.items():
        logger.info("%-10s %3d files %6d lines", package, size["files"], size["lines"])
    for n, name in sorted(files, reverse=True)[:3]:
        logger.info("largest file      %4d lines  %s", n, name)
    for n, name in sorted(functions, reverse=True)[:5]:
        logger.info("largest function  %4d lines  %s", n, name)
    logger.info("longest import chain (%d modules): %s", len(chain), " -> ".join(chain))
    logger.info("type-only imports: %d; no cycle (the chain above ends)", type_only)
    report = {
        "packages": sizes,
        "largest_files": sorted(files, reverse=True)[:3],
        "largest_functions": sorted(functions, reverse=True)[:5],
        "longest_import_chain": list(chain),
        "type_only_imports": type_only,
    }
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
