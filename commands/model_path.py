"""Command-line values that name a model: `default` (the packaged model), a local folder, or a Hub id, checked
before anything slow starts; and `UsageError`, the mistakes the CLI prints as one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path


class UsageError(ValueError):
    """A mistake in the command line: printed as one line, exit status 2."""


def offline_variable() -> str | None:
    """The variable (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) that puts this process in offline mode, if one does."""
    return next((name for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
                 if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")), None)


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hub endpoint cannot be reached (one quick TCP connection), or None when it can: a Hub id is only
    worth a minute of the Hub client's retries when the Hub answers."""
    import socket
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
    except OSError as error:
        return f"{endpoint} is unreachable: {error}"
    return None


def resolve_model(value: str | None, flag: str = "--model") -> str | None:
    """A `--model` / `--from_model` value: None for the packaged default model (`default` or nothing), the folder
    if it exists, a Hub id if it can be one; a path that does not exist is refused at once (not looked up on the
    Hub for a minute)."""
    if value in (None, "", "default"):
        return None
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{flag} {value}: not a folder; give the folder a MIRACLE model was saved to, or 'default'.")
        return str(path)
    parts = value.replace("\\", "/").split("/")
    path_like = (value.startswith((".", "/", "~")) or "\\" in value or len(parts) != 2 or not all(parts)
                 or Path(parts[0]).exists())
    offline = offline_variable()
    unreachable = None if path_like or offline else hub_unreachable()
    if path_like or offline or unreachable:
        why = f" ({offline} is set, so Hub ids cannot be fetched)" if offline and not path_like else ""
        why = f" (and the Hub, {unreachable}, so it cannot be a Hub id here)" if unreachable else why
        raise UsageError(f"{flag} {value}: no such folder{why}. Give a saved MIRACLE model's folder, or 'default' "
                         "for the packaged default model.")
    print(f"{value} is not a local folder: looking it up as a Hugging Face Hub id ...", file=sys.stderr, flush=True)
    return value
