"""Streaming pipelines: ``client.stream(dag)`` (pipeline.py) over stage replicas started in the
cluster (replica.py), routed by a pure state machine (state.py)."""
