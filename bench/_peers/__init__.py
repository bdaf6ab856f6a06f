"""The parts of ``bench/bench_vs_peers.py`` (issue 7): what every system shares (``common``), what
Dask and Ray share (``futures``) and one runner per system. Every function a system ships to its
workers lives in this package and is shipped by value (``common.ship_by_value``), as it was when
these functions lived in the script's ``__main__``: no worker ever imports ``_peers``.
"""
