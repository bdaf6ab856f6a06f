"""The wire protocol: message types (``messages``) and the codec (``codec``)."""

# Feature message modules register their types in messages.MESSAGES when imported: here, so that
# every import of the protocol has them (an import at the end of messages.py is an import cycle).
from handoffd.protocol import messages_code as _messages_code  # noqa: E402,F401
