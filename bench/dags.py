"""Shapes of the DAG scenarios, shared by the Baton and the Celery side.

- chain40: ``step00 -> step01 -> ... -> step39``;
- fanout500: ``first -> {500 parallel tasks} -> join``;
- dag1000: ``layers`` x ``width`` tasks; every task of layer k > 0 depends on 2 or 3
  distinct tasks of layer k - 1, drawn with a fixed seed (the same DAG on every run and
  machine). A task no one in the next layer picked is simply a leaf (about 8 % per layer).
"""

from __future__ import annotations

import random


def chain_names(length: int) -> list[str]:
    return [f"step{i:02d}" for i in range(length)]


def layered_dag(layers: int, width: int, seed: int) -> list[tuple[str, list[str]]]:
    """(task name, its dependencies) in topological order; names ``L{layer}_{index}``."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible shape, not a secret
    tasks: list[tuple[str, list[str]]] = [(f"L0_{i}", []) for i in range(width)]
    for layer in range(1, layers):
        previous = [f"L{layer - 1}_{i}" for i in range(width)]
        for i in range(width):
            chosen = rng.sample(previous, min(len(previous), rng.choice((2, 3))))
            tasks.append((f"L{layer}_{i}", sorted(chosen, key=_index)))
    return tasks


def _index(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def edge_count(dag: list[tuple[str, list[str]]]) -> int:
    return sum(len(deps) for _, deps in dag)
