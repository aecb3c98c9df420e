"""The DAG model: run and task states, the expression language, compiled plans and the
pure decisions on them (which tasks run, skip or fail; how a run ends)."""
