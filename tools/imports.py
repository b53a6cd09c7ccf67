"""The import graph of relay/, checked against its layers (run by `make lint`).

Reads every module with `ast` (imports inside functions and under TYPE_CHECKING count too)
and fails, naming each arrow, when a module imports one of a layer it must not know, or when
imports run in a circle. `--show` prints the graph between folders.

The layers, bottom up:
  base        relay.errors, relay.models, relay.logs, relay.redaction (they import each other)
  registries  pure translations of registries' notifications (nothing of relay's)
  store       relay.store: SQL only; knows the base and nothing above it
  config      relay.config: relay.toml -> Settings (checks signing secrets with engine.signing)
  engine      relay.engine: decisions, sends, the worker; never the HTTP layer or the CLI
  http, cli   the interfaces; the CLI talks to relay over HTTP and never opens the store
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "relay"
BASE = {"relay.errors", "relay.models", "relay.logs", "relay.redaction"}

# (who, whom it must not import, why): prefixes of dotted module names.
RULES: list[tuple[str, tuple[str, ...], str]] = [
    ("relay.store", ("relay.",), "the store knows only the base modules"),
    ("relay.registries", ("relay.",), "registries' translations are pure"),
    ("relay.engine", ("relay.http", "relay.cli"), "the engine is below the interfaces"),
    ("relay.config", ("relay.store", "relay.http", "relay.cli", "relay.engine"),
     "the config is read before anything runs"),
    ("relay.cli", ("relay.store", "relay.engine"), "the CLI talks to relay over HTTP"),
    ("relay.metrics", ("relay.engine", "relay.http", "relay.cli"),
     "metrics are kept by the engine and the interfaces, not the other way round"),
    ("relay.schemas", ("relay.store", "relay.engine", "relay.http", "relay.cli"),
     "schemas check documents, nothing else"),
]
ALLOWED = {
    ("relay.store", "relay.store"), ("relay.registries", "relay.registries"),
    # The config checks a target's `secret` with the pure Standard Webhooks decoder.
    ("relay.config", "relay.engine.signing"),
    # `relay serve` starts the HTTP app, which starts the rest.
    ("relay.cli", "relay.http.app"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The relay modules that `path` imports (a name imported from a package counts as the
    package, a submodule as itself)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("relay"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not (node.module == "relay" or node.module.startswith("relay.")):
                continue
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if is_module(candidate) else node.module)
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        edges[name] = {target for target in imports_of(path)
                       if target != name and target != "relay"}
    return edges


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix.rstrip(".") + ".")


def violations(edges: dict[str, set[str]]) -> list[str]:
    found = []
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            if target in BASE:
                continue
            for who, forbidden, why in RULES:
                if not _within(source, who):
                    continue
                if any(_within(source, a) and _within(target, b) for a, b in ALLOWED):
                    continue
                if any(target.startswith(prefix) for prefix in forbidden):
                    found.append(f"{source} -> {target}: {why}")
    for name in BASE:
        for target in sorted(edges.get(name, set()) - BASE):
            found.append(f"{name} -> {target}: a base module imports only base modules")
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def folder(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (
        len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else "relay (top)"


def show(edges: dict[str, set[str]]) -> Iterable[str]:
    between: dict[str, set[str]] = {}
    for source, targets in edges.items():
        for target in targets:
            if folder(source) != folder(target):
                between.setdefault(folder(source), set()).add(folder(target))
    for source in sorted(between):
        yield f"{source:18} -> {', '.join(sorted(between[source]))}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="print the graph between folders")
    args = parser.parse_args(argv)
    edges = graph()
    if args.show:
        for line in show(edges):
            print(line)
    problems = violations(edges)
    problems += ["import cycle: " + " <-> ".join(cycle) for cycle in cycles(edges)]
    for problem in problems:
        print(f"imports: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"imports: {len(edges)} modules, {sum(map(len, edges.values()))} imports, layers "
          "respected, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
