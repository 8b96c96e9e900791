"""Graph structure only: topological order and cycle detection, no calibration logic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class CycleError(ValueError):
    """The dependencies loop; the message names the nodes on the loop in order."""


class MissingDependencyError(KeyError):
    """A node depends on a name that is not in the graph."""


def check_dependencies(deps: Mapping[str, Sequence[str]]) -> None:
    missing = {n: [d for d in ds if d not in deps] for n, ds in deps.items()}
    missing = {n: m for n, m in missing.items() if m}
    if missing:
        text = "; ".join(f"{n} needs {m}" for n, m in sorted(missing.items()))
        raise MissingDependencyError(f"unknown dependencies: {text}")


def topological_order(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Names ordered so every node comes after all its dependencies.

    Depth-first, visiting nodes and dependencies in insertion order so the order
    is deterministic. A cycle raises :class:`CycleError` naming the loop,
    e.g. ``a -> b -> c -> a``.
    """
    check_dependencies(deps)
    order: list[str] = []
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(n: str) -> None:
        if n in done:
            return
        if n in on_path:
            loop = path[path.index(n) :] + [n]
            raise CycleError(
                "calibration graph has a cycle (a -> b: a depends on b): " + " -> ".join(loop)
            )
        path.append(n)
        on_path.add(n)
        for d in deps[n]:
            visit(d)
        path.pop()
        on_path.discard(n)
        done.add(n)
        order.append(n)

    for n in deps:
        visit(n)
    return order
