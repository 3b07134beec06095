"""Options of the solver back ends: validated once, for every method, and documented from their source.

`resolve_options` is what `placement.solve` calls before any back end runs. It

- rejects an option no back end knows, listing the method's own;
- checks the common options (`COMMON`: ``time_limit``, ``gap``, ``threads``, ``seed``)
  the same way for every method (scipy's ``milp`` keeps its checks in one function too);
- drops a common option the method cannot use, with one `InputWarning` (a sweep may
  pass ``time_limit`` to every method; ``pipeline`` simply has nothing to limit);
- checks every other value against the type of the back end's default (a text ``'10'``
  where the default is a number is an error naming the option, not a ``TypeError``
  from inside a solver).

`method_options` lists a method's options with defaults and meaning, read from the
back end's signature and the Parameters section of its numpydoc docstring (as
scipy's ``show_options`` reads its solvers'). `parse_option_pairs` reads the CLI's
``--option KEY=VALUE`` pairs, each value a YAML scalar or flow collection.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from placement.errors import InputError, InputWarning
from placement.methods import METHODS  # the one list of methods
from placement.files import parse_yaml, short

__all__ = ["COMMON", "Deadline", "OptionDoc", "check_common", "resolve_options", "method_options", "backend_of",
           "parse_option_pairs"]

COMMON = ("time_limit", "gap", "threads", "seed")


@dataclass(frozen=True)
class Deadline:
    """The moment a call must end by, passed down so that every stage (warm start, model
    building, each solve) spends only what is left of one ``time_limit``.

    Attributes
    ----------
    end_s : float or None
        `time.perf_counter` value at which time is up; None for no limit.
    """

    end_s: float | None = None

    @classmethod
    def after(cls, time_limit_s: float | None) -> "Deadline":
        """The deadline `time_limit_s` seconds from now (None: never)."""
        return cls(None if time_limit_s is None else time.perf_counter() + float(time_limit_s))

    def remaining_s(self, floor_s: float = 0.01) -> float | None:
        """Seconds left, at least `floor_s` (solvers reject a zero limit); None without a limit."""
        return None if self.end_s is None else max(self.end_s - time.perf_counter(), floor_s)

    @property
    def expired(self) -> bool:
        """True once the time is up."""
        return self.end_s is not None and time.perf_counter() >= self.end_s


@dataclass(frozen=True)
class OptionDoc:
    """One option of a back end.

    Attributes
    ----------
    name : str
    default : any
        The back end's default (``inspect.Parameter.empty`` when required).
    kind : str
        The type line of its docstring entry (``float, optional``), or ``""``.
    meaning : str
        The docstring's description, one paragraph.
    """

    name: str
    default: Any
    kind: str
    meaning: str


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_common(options: dict[str, Any]) -> None:
    """Check the common options present in `options`.

    Parameters
    ----------
    options : dict
        Option name → value; names outside `COMMON` are ignored.

    Raises
    ------
    InputError
        ``time_limit`` not a positive finite number of seconds, ``gap`` not in [0, 1),
        ``threads`` not a whole number >= 1, ``seed`` not a whole number.
    """
    checks: dict[str, tuple[Callable[[Any], bool], str]] = {
        "time_limit": (lambda v: _is_number(v) and math.isfinite(v) and v > 0, "a positive, finite number of seconds"),
        "gap": (lambda v: _is_number(v) and 0 <= v < 1, "a relative gap in [0, 1), such as 0.01"),
        "threads": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a whole number, at least 1"),
        "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    }
    for name, (ok, what) in checks.items():
        if name in options and options[name] is not None and not ok(options[name]):
            value = options[name]
            hint = " (text: write it without quotes)" if isinstance(value, str) else ""
            raise InputError(f"`{name}` must be {what}, got {short(value)}{hint}")


def backend_of(method: str) -> tuple[str, Callable[..., Any]]:
    """The canonical name and the function of back end `method`.

    Raises
    ------
    InputError
        For an unknown method, listing the known ones.
    """
    key = method.lower() if isinstance(method, str) else method
    if key not in METHODS:
        raise InputError(f"unknown method {short(method)}; methods are {', '.join(METHODS)}")
    module, name = METHODS[key]
    return key, getattr(importlib.import_module(module), name)


# The kinds of value an annotation's members admit, for the members this check understands.
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "float": (lambda v: _is_number(v) and math.isfinite(v), "a number"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "text"),
    "None": (lambda v: v is None, "null"),
    "tuple": (lambda v: isinstance(v, (tuple, list)), "a list"),
    "list": (lambda v: isinstance(v, (tuple, list)), "a list"),
    "Sequence": (lambda v: isinstance(v, (tuple, list)), "a list"),
    "dict": (lambda v: isinstance(v, dict), "a mapping"),
}


def _check_union(method: str, name: str, value: Any, annotation: str) -> None:
    """For an annotation such as ``float | None`` or ``tuple[str, ...] | list[str]``: the value must be one of them.

    An annotation with a member this check does not know (a class such as ``Plan``)
    is left to the back end.
    """
    members = [m.strip().split("[")[0] for m in annotation.split("|")]
    if not all(m in _KINDS for m in members):
        return
    if not any(_KINDS[m][0](value) for m in members):
        what = " or ".join(dict.fromkeys(_KINDS[m][1] for m in members if m != "None"))
        raise InputError(f"method {method!r}: option `{name}` must be {what}, got {short(value)}")


def _check_against_default(method: str, name: str, value: Any, parameter: inspect.Parameter) -> None:
    """A value of the wrong kind for its option's default (or its annotation) is an error naming the option."""
    default = parameter.default
    if value is None:
        return
    if "|" in str(parameter.annotation):
        _check_union(method, name, value, str(parameter.annotation))
        return
    if default is None or default is inspect.Parameter.empty:
        return
    if isinstance(default, bool):
        ok, what = isinstance(value, bool), "true or false"
    elif isinstance(default, (int, float)):
        ok, what = _is_number(value) and math.isfinite(value), "a number"
        if isinstance(default, int) and ok and not isinstance(value, int):
            ok, what = float(value).is_integer(), "a whole number"
    elif isinstance(default, str):
        ok, what = isinstance(value, str), "text"
    elif isinstance(default, (tuple, list)):
        ok, what = isinstance(value, (tuple, list)), "a list such as [2, 4, 8]"
    else:
        return
    if not ok:
        raise InputError(f"method {method!r}: option `{name}` must be {what} (default {default!r}), got {short(value)}")


def resolve_options(method: str, options: dict[str, Any]) -> tuple[str, Callable[..., Any], dict[str, Any]]:
    """Check `options` for `method`; return its name, back end and the options it takes.

    Parameters
    ----------
    method : str
        A name of `placement.solve.METHODS` (any case).
    options : dict
        Option name → value, as given to `placement.solve`.

    Returns
    -------
    tuple
        ``(name, backend, options)``: the options without the common ones the
        method cannot use (each dropped one is an `InputWarning`).

    Raises
    ------
    InputError
        On an unknown method or option, or a value of the wrong kind.
    """
    key, backend = backend_of(method)
    parameters = {p.name: p for p in inspect.signature(backend).parameters.values() if p.name != "instance"}
    unknown = sorted(set(options) - set(parameters) - set(COMMON))
    if unknown:
        known = ", ".join(parameters) if parameters else "none"
        raise InputError(f"method {key!r} does not take option(s) {', '.join(unknown)}; its options are: {known}")
    check_common(options)
    kept = {}
    for name, value in options.items():
        if name not in parameters:
            warnings.warn(f"method {key!r} has no `{name}`; ignored", InputWarning, stacklevel=3)
            continue
        _check_against_default(key, name, value, parameters[name])
        kept[name] = value
    return key, backend, kept


_SECTION = re.compile(r"^\s*(Parameters|Returns|Raises|Yields|Examples|Notes|See Also|References)\s*$")


def _parameter_docs(doc: str) -> dict[str, tuple[str, str]]:
    """Name → (type line, description) from a numpydoc Parameters section."""
    lines = inspect.cleandoc(doc or "").splitlines()
    found: dict[str, tuple[str, str]] = {}
    inside, current = False, None
    for i, line in enumerate(lines):
        section = _SECTION.match(line)
        if section and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            inside, current = section.group(1) == "Parameters", None
            continue
        if not inside or set(line.strip()) == {"-"}:
            continue
        if line and not line[0].isspace():
            names, _, kind = line.partition(":")
            current = [n.strip() for n in names.split(",")]
            for name in current:
                found[name] = (kind.strip(), "")
        elif current and line.strip():
            for name in current:
                kind, text = found[name]
                found[name] = (kind, f"{text} {line.strip()}".strip())
    return found


def method_options(method: str) -> list[OptionDoc]:
    """The options of `method`: name, default, type and meaning, in signature order.

    Parameters
    ----------
    method : str

    Returns
    -------
    list of OptionDoc

    Examples
    --------
    >>> [o.name for o in method_options("myopic+")]
    ['current', 'horizon', 'max_moves', 'compound_limit', 'lns_time_s', 'lns_layers', 'time_limit']
    """
    _, backend = backend_of(method)
    docs = _parameter_docs(backend.__doc__ or "")
    return [OptionDoc(p.name, p.default, *docs.get(p.name, ("", "")))
            for p in inspect.signature(backend).parameters.values() if p.name != "instance"]


def parse_option_pairs(pairs: list[str]) -> dict[str, Any]:
    """Read ``KEY=VALUE`` pairs; each value is YAML (``10``, ``0.5``, ``true``, ``[star, ring]``, ``{embed: d0}``).

    Parameters
    ----------
    pairs : list of str

    Returns
    -------
    dict

    Raises
    ------
    InputError
        On a pair without ``=``, an empty key, a key given twice, or a value that is not YAML.

    Examples
    --------
    >>> parse_option_pairs(["horizon=4", "collectives=[star]", "solver=cbc"])
    {'horizon': 4, 'collectives': ['star'], 'solver': 'cbc'}
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise InputError(f"`--option` {short(pair)}: write KEY=VALUE, such as horizon=4")
        if key in options:
            raise InputError(f"`--option` {key} is given twice; give it once")
        try:
            options[key] = parse_yaml(text) if text.strip() else None
        except InputError as exc:
            raise InputError(f"`--option {key}`: {exc}") from None
    return options
