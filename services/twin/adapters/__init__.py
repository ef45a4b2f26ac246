"""One module per technology. Nothing here connects at import time."""
