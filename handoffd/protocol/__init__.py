"""The wire protocol: message types (``messages``) and the codec (``codec``)."""

# Message modules of features, registered whenever the protocol package is imported (an import at
# the end of messages.py would be an import cycle: they import its decorators).
from handoffd.protocol import messages_rebalance as _messages_rebalance  # noqa: E402,F401
