"""Run a handoffd DAG on another engine: ``handoffd.engines.dask.execute`` and
``handoffd.engines.ray.execute`` (each imports its engine only when used)."""
