"""The daemon: the node's wiring and one I/O shell per part it drives (owner, results, replication,
executor), each beside the pure state machine that makes its decisions."""
