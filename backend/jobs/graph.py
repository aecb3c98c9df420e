"""A job's DAG as nodes, edges and layers (topological generations), for drawing."""

from __future__ import annotations

import uuid

import networkx as nx

from backend.jobs.schemas import GraphEdge, GraphNode, JobGraph
from backend.jobs.spec import JobSpec, dependency_graph


def build_graph(job_id: uuid.UUID, version: int, spec: JobSpec) -> JobGraph:
    """Nodes, edges and layers (topological generations) of a spec's DAG."""
    graph = dependency_graph(spec)
    order = {task.name: index for index, task in enumerate(spec.tasks)}
    return JobGraph(
        job_id=job_id,
        version=version,
        nodes=[
            GraphNode(
                name=task.name,
                type=task.type,
                depends_on=list(task.depends_on),
                trigger_rule=task.trigger_rule,
                on_failure=task.on_failure,
                when=task.when,
                for_each=task.for_each,
                queue=spec.queue_for(task),
            )
            for task in spec.tasks
        ],
        edges=[GraphEdge(source=a, target=b) for a, b in graph.edges],
        layers=[
            sorted(layer, key=order.__getitem__) for layer in nx.topological_generations(graph)
        ],
    )
