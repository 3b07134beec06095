"""Reading and writing the library's files safely.

Reading: `read_text` decodes UTF-8 (a UTF-16 or Latin-1 file is an error that says
so, not a crash deep in a parser), and `parse_yaml` / `parse_json` refuse what would
hang or exhaust memory: YAML alias bombs (the expanded document is bounded), deep
nesting, and duplicate keys (a second ``model:`` must not silently replace the first).

Writing: `atomic_write` writes a file whole or not at all. The bytes go to a temporary
file in the target's own folder, are flushed to disk, and replace the target with
`os.replace` (atomic on POSIX and Windows within one file system). A full disk or an
interrupt leaves the previous file as it was and removes the temporary file.
`check_output_path` checks an ``--out`` target before any work starts.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml

from placement.errors import InputError

__all__ = [
    "MAX_DOCUMENT_NODES", "MAX_DEPTH", "read_text", "parse_yaml", "parse_json", "load_data_file",
    "atomic_write", "write_text_atomic", "check_output_path", "short", "json_ready",
]

# Bounds on a parsed document. The largest shipped instance has ~300 nodes and depth 5;
# these leave room for hand-written files three orders of magnitude larger.
MAX_DOCUMENT_NODES = 200_000
MAX_DEPTH = 64
_MAX_ECHO = 80  # characters of a user's value quoted back in a message


def short(value: Any, limit: int = _MAX_ECHO) -> str:
    """``repr(value)`` cut to `limit` characters, so a message never echoes a huge input.

    Parameters
    ----------
    value : any
    limit : int
        Characters kept (an ellipsis marks the cut).

    Returns
    -------
    str
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_ready(value: Any) -> Any:
    """`value` with NaN and infinities as None (JSON has neither) and NumPy scalars as Python ones.

    Parameters
    ----------
    value : any
        Nested dicts, lists and tuples of JSON values, floats and NumPy scalars.

    Returns
    -------
    any
        The same structure, safe for ``json.dumps(..., allow_nan=False)``.
    """
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of `path`, decoded as UTF-8 (a UTF-8 byte-order mark is allowed).

    Parameters
    ----------
    path : str or Path
    what : str
        What the file is, for messages (``"instance"``, ``"plan"``).

    Returns
    -------
    str

    Raises
    ------
    InputError
        When the file cannot be read (permissions, a folder) or is not UTF-8.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{what} {str(path)!r} cannot be read ({exc.strerror or exc}); check the path and its permissions") from None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise InputError(f"{what} {str(path)!r} is UTF-16; save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                         "save it as UTF-8") from None


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys and documents that expand too far."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges; later keys override on purpose
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                mark = key_node.start_mark
                raise InputError(f"line {mark.line + 1}: key {short(key)} appears twice in one mapping; keep one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _check_expansion(node)
        return node


def _check_expansion(root: yaml.Node) -> None:
    """Raise when the document, with every alias expanded, is too large or too deep.

    Sizes are memoized per node, so a bomb (nodes referring to nodes many times) is
    measured in time linear in its *written* size, never expanded.
    """
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, children_done = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"the document nests deeper than {MAX_DEPTH} levels; flatten it")
        children = [] if isinstance(node, yaml.ScalarNode) else (
            node.value if isinstance(node, yaml.SequenceNode) else [c for pair in node.value for c in pair])
        if children_done:
            size[id(node)] = 1 + sum(size[id(c)] for c in children)
            if size[id(node)] > MAX_DOCUMENT_NODES:
                raise InputError(f"the document expands to more than {MAX_DOCUMENT_NODES:,} values (YAML aliases "
                                 "repeat what they point to); write it out or use fewer aliases")
            continue
        if id(node) in size:
            continue
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in size)


def parse_yaml(text: str) -> Any:
    """Parse YAML with the safe loader, bounded (see the module docstring).

    Raises
    ------
    InputError
        On a syntax error, a duplicate key, or a document too large or too deep.
    """
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except InputError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InputError(f"not valid YAML{where}: {exc.problem or exc.context}") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:  # dates such as 2001-02-30 raise ValueError
        raise InputError(f"not valid YAML ({short(str(exc), 200)})") from None
    except RecursionError:
        raise InputError(f"the document nests deeper than {MAX_DEPTH} levels; flatten it") from None


def parse_json(text: str) -> Any:
    """Parse JSON, refusing deep nesting and the non-standard ``NaN``/``Infinity``.

    Raises
    ------
    InputError
    """
    def no_constant(name: str) -> Any:
        raise InputError(f"JSON has a bare {name}; write a number or null")

    try:
        data = json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise InputError(f"the document nests deeper than {MAX_DEPTH} levels; flatten it") from None
    _check_depth(data)
    return data


def _check_depth(data: Any) -> None:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"the document nests deeper than {MAX_DEPTH} levels; flatten it")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((c, depth + 1) for c in children)


def load_data_file(path: str | Path, what: str = "file") -> Any:
    """Read and parse a YAML or JSON file (JSON when the suffix is ``.json``).

    Parameters
    ----------
    path : str or Path
    what : str
        What the file is, for messages.

    Returns
    -------
    any
        The parsed document.

    Raises
    ------
    InputError
        See `read_text`, `parse_yaml` and `parse_json`; messages start with the path.
    """
    path = Path(path)
    text = read_text(path, what)
    try:
        return parse_json(text) if path.suffix == ".json" else parse_yaml(text)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_options: Any) -> Iterator[IO]:
    """Open a temporary file beside `path`; on success it replaces `path`, on failure it is removed.

    Parameters
    ----------
    path : str or Path
        The target. Its folder must exist.
    mode : {"w", "wb"}
    **open_options
        Passed to `open` (``newline=""`` for CSV, ``encoding``).

    Yields
    ------
    file object

    Raises
    ------
    OSError
        What the file system raised (a full disk, no permission); the target is unchanged.
    """
    path = Path(path)
    if "b" not in mode:
        open_options.setdefault("encoding", "utf-8")
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temp, _mode_for(path))  # mkstemp makes 0600; the result gets what a plain open() would give
        with os.fdopen(fd, mode, **open_options) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


def _mode_for(path: Path) -> int:
    """The permissions of the file being replaced, or of a new file under the current umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically (see `atomic_write`)."""
    with atomic_write(path) as fh:
        fh.write(text)


def check_output_path(path: str | Path, *, inputs: tuple[str | Path, ...] = (), folder: bool = False) -> Path:
    """Check that `path` can be written, before any work starts.

    Parameters
    ----------
    path : str or Path
        A file to write (or, with `folder`, a folder to create files in).
    inputs : tuple of paths
        Files the command reads; writing over one of them is refused.
    folder : bool
        `path` is a folder, created if missing (its nearest existing parent must be writable).

    Returns
    -------
    Path

    Raises
    ------
    InputError
        Naming the problem: a missing or read-only folder, a folder where a file is
        wanted (or the reverse), or an input file as the target.
    """
    path = Path(path)
    if folder:
        if path.exists() and not path.is_dir():
            raise InputError(f"`--out` {str(path)!r} is a file; give a folder")
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(f"`--out` {str(path)!r}: {str(existing)!r} is not a writable folder")
        return path
    if path.is_dir():
        raise InputError(f"`--out` {str(path)!r} is a folder; give a file name such as {str(path / 'plan.json')!r}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"`--out` {str(path)!r}: folder {str(parent)!r} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"`--out` {str(path)!r}: folder {str(parent)!r} is not writable")
    for given in inputs:
        if Path(given).exists() and path.exists() and os.path.samefile(given, path):
            raise InputError(f"`--out` {str(path)!r} is an input of this command; write the result elsewhere")
    return path
