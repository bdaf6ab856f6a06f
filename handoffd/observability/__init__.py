"""Observability (issue 16): each daemon's HTTP port (``http``) serves Prometheus metrics
(``metrics``), a live dashboard (``static/``, fed by ``cluster``) and its JSON API, behind a token
derived from the cluster key (``tokens``). Nothing here runs unless the port is on; the daemon's
loop pays only for the snapshots a request asks for. docs/observability.md is the user's guide."""
