"""Atomic file writes: a reader (or a resumed run) never sees a half-written file."""
import os
from pathlib import Path


def write_atomic(path, write):
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path`` (same folder, one rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path, text: str):
    write_atomic(path, lambda tmp: tmp.write_text(text))
