"""The wire protocol: message types (``messages``) and the codec (``codec``)."""

# Feature message modules register their types in messages.MESSAGES when imported: here, so that
# every import of the protocol has them (an import at the end of messages.py is an import cycle:
# they import messages for its decorators). Python runs this file before any module of the
# package, so every type is registered before a codec is built.
from handoffd.protocol import messages_chunks as _messages_chunks  # noqa: E402,F401
from handoffd.protocol import messages_code as _messages_code  # noqa: E402,F401
from handoffd.protocol import messages_columns as _messages_columns  # noqa: E402,F401
from handoffd.protocol import messages_hooks as _messages_hooks  # noqa: E402,F401
from handoffd.protocol import messages_io as _messages_io  # noqa: E402,F401
from handoffd.protocol import messages_lease as _messages_lease  # noqa: E402,F401
from handoffd.protocol import messages_lifeguard as _messages_lifeguard  # noqa: E402,F401
from handoffd.protocol import messages_ops as _messages_ops  # noqa: E402,F401
from handoffd.protocol import messages_rebalance as _messages_rebalance  # noqa: E402,F401
from handoffd.protocol import messages_streamnet as _messages_streamnet  # noqa: E402,F401
from handoffd.protocol import messages_submit as _messages_submit  # noqa: E402,F401
from handoffd.protocol import messages_swim as _messages_swim  # noqa: E402,F401
