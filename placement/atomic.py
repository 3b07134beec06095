"""Writing a file so that it appears whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from placement.errors import InputError

__all__ = ["write_text_atomic"]


def write_text_atomic(path: str | Path, text: str, *, what: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder and a rename.

    Parameters
    ----------
    path : str or Path
    text : str
    what : str
        What is written, for the message when the folder is missing (``"report"``).

    Returns
    -------
    Path
        `path`.

    Raises
    ------
    InputError
        When the folder of `path` does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{what}: folder {str(path.parent)!r} does not exist; create it or write elsewhere")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes the file private; these files are meant to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
