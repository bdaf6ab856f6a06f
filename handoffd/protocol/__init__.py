"""The wire protocol: message types (``messages``) and the codec (``codec``)."""

# Feature message modules register their types (handoffd.protocol.messages' registry) here, not
# at the end of messages.py: they import messages for its decorators, and an import back from
# messages.py would be a cycle (tests/unit/test_module_rules.py). Python runs this file before
# any module of the package, so every type is registered before a codec is built.
from handoffd.protocol import messages_ops as _messages_ops  # noqa: E402,F401
