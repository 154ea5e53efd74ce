"""Partitions of the task pool: which tasks share one adapter (or head copy).

``--amf.partitions`` is one of

* ``per_task``  — one partition per task (the paper's setting: one weight copy per task);
* ``per_suite`` — the env's suites (``TaskCatalog.suite_of``: LIBERO suites, Metaworld's
  difficulty groups);
* ``clustered`` — ``--amf.n_partitions`` groups by k-means over the pretrained policy's mean
  task embeddings (``cluster_tasks``);
* ``all``       — one partition holding the whole pool: a shared adapter;
* a JSON map, inline or in a file (the value is a path unless it starts with ``{``), either
  ``{"task": "partition", ...}`` or ``{"partition": ["task", ...]}``.

Every task of the pool must be in exactly one partition and every partition must hold a pool
task; anything else is a one-line ``AMFInputError`` naming the offender.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from lerobot_amf.errors import AMFInputError
from lerobot_amf.trust import MAX_SETTINGS_BYTES, check_plain_name, read_bounded_text

SCHEMES = ("per_task", "per_suite", "clustered", "all")


@dataclass(frozen=True)
class Partitions:
    """partition name -> its tasks, in pool order; ``scheme`` says how it was made."""

    groups: dict[str, list[str]]
    scheme: str

    def of(self, task: str) -> str:
        for name, tasks in self.groups.items():
            if task in tasks:
                return name
        raise AMFInputError(f"Task {task!r} is in no partition ({self.describe()}).")

    @property
    def names(self) -> list[str]:
        return list(self.groups)

    def describe(self) -> str:
        return "; ".join(f"{name}: {', '.join(tasks)}" for name, tasks in self.groups.items())

    def to_json(self) -> dict:
        return {"scheme": self.scheme, "groups": self.groups}

    @classmethod
    def from_json(cls, data: dict) -> "Partitions":
        """From a ``routing.json`` (possibly someone else's): every name a plain one, since the
        adapter folders and head files are read by it."""
        groups = data.get("groups") if isinstance(data, dict) else None
        if not isinstance(groups, dict) or not all(isinstance(v, list) and all(isinstance(t, str) for t in v)
                                                   for v in groups.values()):
            raise AMFInputError("routing.json: 'partitions.groups' must map partition names to lists of task names.")
        return cls({check_plain_name(k, "routing.json: partition name"): list(v) for k, v in groups.items()},
                   str(data.get("scheme", "")))


def make_partitions(spec: str, pool: list[str], *, task_embeddings: dict[str, np.ndarray] | None = None,
                    n_partitions: int = 2, seed: int = 0, suite_of: Callable[[str], str] | None = None) -> Partitions:
    """The partitions named by ``spec`` (see the module docstring) over ``pool``.

    suite_of: task -> suite (the env's ``TaskCatalog.suite_of``); default: the ``suite/`` prefix.
    """
    if spec == "per_task":
        return validated_partitions({_safe_name(t): [t] for t in pool}, pool, spec)
    if spec == "all":
        return validated_partitions({"all": list(pool)}, pool, spec)
    if spec == "per_suite":
        groups: dict[str, list[str]] = {}
        for task in pool:
            groups.setdefault((suite_of or suite_prefix)(task), []).append(task)
        return validated_partitions(groups, pool, spec)
    if spec == "clustered":
        if task_embeddings is None:
            raise AMFInputError("amf.partitions=clustered needs the pretrained policy's task embeddings.")
        return validated_partitions(cluster_tasks(task_embeddings, pool, n_partitions, seed), pool, spec)
    if spec.lstrip().startswith("{"):
        return parse_partition_map(spec, pool, "map:inline")
    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        return load_partition_map(path, pool)
    raise AMFInputError(f"Unknown amf.partitions={spec!r}. Allowed: {', '.join(SCHEMES)}, a JSON map "
                        '(e.g. \'{"a": ["task1"], "b": ["task2"]}\'), or a path to a JSON file holding one.')


def load_partition_map(path: Path, pool: list[str]) -> Partitions:
    """A user's JSON map in a file."""
    if not Path(path).exists():
        raise AMFInputError(f"amf.partitions={path}: no such file.")
    text = read_bounded_text(Path(path), f"amf.partitions={path}", MAX_SETTINGS_BYTES).decode("utf-8", "replace")
    return parse_partition_map(text, pool, f"map:{Path(path).name}", shown=str(path))


def parse_partition_map(text: str, pool: list[str], scheme: str, shown: str | None = None) -> Partitions:
    """A user's JSON map, ``{task: partition}`` or ``{partition: [tasks]}``; ``shown`` names it in errors."""
    shown = shown if shown is not None else text
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        # draccus parses a ``{...}`` command-line value as YAML and hands a ``str`` field the
        # Python repr of the result ("{'a': ['reach-v3']}"): read it back as a literal.
        try:
            data = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise AMFInputError(f"amf.partitions={shown}: not valid JSON ({err}).") from None
    if not isinstance(data, dict) or not data:
        raise AMFInputError(f"amf.partitions={shown}: expected a non-empty JSON object.")
    if all(isinstance(v, str) for v in data.values()):  # {task: partition}
        groups: dict[str, list[str]] = {}
        for task, name in data.items():
            groups.setdefault(name, []).append(task)
    elif all(isinstance(v, list) and all(isinstance(t, str) for t in v) for v in data.values()):  # {partition: [tasks]}
        groups = {name: list(tasks) for name, tasks in data.items()}
    else:
        raise AMFInputError(f"amf.partitions={shown}: expected {{task: partition}} or {{partition: [tasks]}}.")
    try:
        return validated_partitions(groups, pool, scheme)
    except AMFInputError as err:
        raise AMFInputError(f"amf.partitions={shown}: {err}") from None


def validated_partitions(groups: dict[str, list[str]], pool: list[str], scheme: str) -> Partitions:
    """Validate ``groups`` against ``pool`` and return them in pool order."""
    unknown = sorted({t for tasks in groups.values() for t in tasks} - set(pool))
    if unknown:
        raise AMFInputError(f"Partition map names task(s) outside the pool: {', '.join(unknown)}. Pool: {', '.join(pool)}.")
    empty = [name for name, tasks in groups.items() if not tasks]
    if empty:
        raise AMFInputError(f"Partition(s) with no tasks: {', '.join(empty)}.")
    seen: dict[str, str] = {}
    for name, tasks in groups.items():
        for task in tasks:
            if task in seen and seen[task] != name:
                raise AMFInputError(f"Task {task!r} is in two partitions: {seen[task]!r} and {name!r}.")
            seen[task] = name
    missing = [t for t in pool if t not in seen]
    if missing:
        raise AMFInputError(f"Task(s) in no partition: {', '.join(missing)}. Every pool task needs one.")
    for name in groups:  # adapter folders and head files are named after their partition
        check_plain_name(name, "Partition name")
    ordered = {name: [t for t in pool if seen[t] == name] for name in groups}
    return Partitions(ordered, scheme)


def suite_prefix(task: str) -> str:
    """The suite of a ``suite/task`` name."""
    if "/" in task:
        return task.split("/", 1)[0]
    raise AMFInputError(f"amf.partitions=per_suite: no suite known for task {task!r}; pass a JSON map instead.")


def cluster_tasks(task_embeddings: dict[str, np.ndarray], pool: list[str], k: int, seed: int = 0,
                  iters: int = 100) -> dict[str, list[str]]:
    """k-means (k-means++ init, seeded) over per-task mean embeddings; clusters named by their first task."""
    if not 1 <= k <= len(pool):
        raise AMFInputError(f"amf.n_partitions={k}: must be between 1 and the pool size {len(pool)}.")
    x = np.stack([np.asarray(task_embeddings[t], dtype=np.float64) for t in pool])
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # direction, not scale
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min([((x - c) ** 2).sum(1) for c in centres], axis=0)
        probs = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1 / len(x))
        centres.append(x[rng.choice(len(x), p=probs)])
    centres = np.stack(centres)
    labels = np.zeros(len(x), dtype=int)
    for _ in range(iters):
        labels_new = ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        if _ and np.array_equal(labels_new, labels):
            break
        labels = labels_new
        for j in range(k):
            if (labels == j).any():
                centres[j] = x[labels == j].mean(0)
    groups: dict[str, list[str]] = {}
    for j in sorted(set(labels.tolist()), key=lambda j: int(np.flatnonzero(labels == j)[0])):
        members = [pool[i] for i in np.flatnonzero(labels == j)]
        groups[f"cluster{len(groups)}_{_safe_name(members[0])}"] = members
    return groups


def _safe_name(task: str) -> str:
    """A partition name usable as a peft adapter name and a file name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in task)
