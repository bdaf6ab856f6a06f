"""The wire protocol: message types (``messages``) and the codec (``codec``)."""
