# cython: language_level=3
# _process.py compiled beside it (setup.py EXECUTOR_COMPILED): no C types are declared, so every
# name the module exports stays a Python name (the pool, the benches and the tests read KEPT,
# INLINE_VALUE and the rest, and may patch them); the compiled build is the same loop with its
# steps as C calls instead of the interpreter's opcodes.
