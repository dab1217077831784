"""How commands report problems: one line per problem, naming the file."""

from __future__ import annotations

import sys


def error_line(err: BaseException, path=None) -> str:
    """``err`` as one line, starting with ``path`` when given and the message does not name it."""
    msg = err.args[0] if isinstance(err, KeyError) and err.args else err
    msg = " ".join(str(msg).split()) or type(err).__name__
    if path is not None and str(path) not in msg:
        msg = f"{path}: {msg}"
    return msg


def warn(msg: str) -> None:
    print(f"hmr: warning: {msg}", file=sys.stderr)
