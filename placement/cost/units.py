"""Quantities written as people write them (``6 GiB``, ``100 Mbit/s``, ``2 ms``, ``1.2 TFLOPS``).

Parsing is pint's. The registry is built from a short definition list rather than
pint's default one because the default treats bits and bytes as dimensionless, so
``memory: 5`` or ``memory: 5 ms`` could not be told apart from ``5 GiB``. Here
information (bit, byte), time and compute (flop) are dimensions of their own and a
quantity of the wrong kind is an error that says which kind the field wants.
"""

from __future__ import annotations

import functools
import math
import re

import pint

from placement.errors import InputError

__all__ = ["parse_quantity", "BYTES", "BYTES_PER_S", "SECONDS", "FLOP_PER_S", "format_bytes", "format_seconds"]

_DEFINITIONS = """
milli- = 1e-3 = m-
micro- = 1e-6 = u- = µ-
nano- = 1e-9 = n-
kilo- = 1e3 = k- = K-
mega- = 1e6 = M-
giga- = 1e9 = G-
tera- = 1e12 = T-
peta- = 1e15 = P-
kibi- = 2**10 = Ki-
mebi- = 2**20 = Mi-
gibi- = 2**30 = Gi-
tebi- = 2**40 = Ti-
second = [time] = s = sec
minute = 60 * second = min
hour = 60 * minute = h
bit = [information] = b
byte = 8 * bit = B = octet
flop = [compute] = FLOP
FLOPS = flop / second = flops
bps = bit / second
"""

# (target unit, human name of the kind, an example) for each kind of field.
BYTES = ("byte", "an amount of memory", "6 GiB")
BYTES_PER_S = ("byte / second", "a bandwidth", "100 Mbit/s")
SECONDS = ("second", "a duration", "2 ms")
FLOP_PER_S = ("flop / second", "a compute rate", "1.2 TFLOPS")


# `200 mbps` reads as 200 *milli*bit/s in SI; nobody means that, so a milli- prefix on
# bits or bytes is refused with the likely intended spelling.
_MILLI_INFORMATION = re.compile(r"(?<![A-Za-z])m(bit|bps|b|B|byte)s?(?![A-Za-z])")
_BITS = re.compile(r"(bit|bps|(?<![A-Za-z])[kKMGTP]i?b(?![A-Za-z]))")


def _unit_traps(text: str, kind: tuple[str, str, str], field: str) -> None:
    """Refuse spellings that parse but almost surely mean something else."""
    unit, what, example = kind
    if "byte" in unit and _MILLI_INFORMATION.search(text):
        byte = _MILLI_INFORMATION.search(text).group(1) in ("B", "byte")
        number = re.match(r"\s*[-+0-9.eE]*", text).group(0).strip() or "100"
        raise InputError(f"`{field}`: {text!r} would be milli{'bytes' if byte else 'bits'} per second; "
                         f"for mega{'bytes' if byte else 'bits'} write '{number} {'MB/s' if byte else 'Mbit/s'}'")
    if unit == "byte" and _BITS.search(text):
        raise InputError(f"`{field}`: {text!r} is in bits; write memory in bytes such as '8 GB' or '8 GiB'")


@functools.cache
def _registry() -> pint.UnitRegistry:
    registry = pint.UnitRegistry(filename=None)
    for line in _DEFINITIONS.strip().splitlines():
        registry.define(line)
    return registry


def parse_quantity(value: str | float | int, kind: tuple[str, str, str], *, field: str, positive: bool = True) -> float:
    """Parse a quantity and return its magnitude in the kind's base unit.

    Parameters
    ----------
    value : str or float
        Text such as ``"6 GiB"``, or a bare number already in the base unit
        (bytes, bytes/s, seconds or FLOP/s).
    kind : tuple
        One of `BYTES`, `BYTES_PER_S`, `SECONDS`, `FLOP_PER_S`.
    field : str
        The field's name, used in error messages.
    positive : bool
        Require a value > 0 (otherwise >= 0).

    Returns
    -------
    float
        Bytes, bytes per second, seconds or FLOP per second.

    Raises
    ------
    InputError
        If the text does not parse, has the wrong kind of unit, or is not positive.

    Examples
    --------
    >>> parse_quantity("100 Mbit/s", BYTES_PER_S, field="bandwidth")
    12500000.0
    >>> parse_quantity("2 ms", SECONDS, field="latency")
    0.002
    """
    unit, what, example = kind
    if isinstance(value, bool):
        raise InputError(f"`{field}`: expected {what} such as {example!r}, got {value!r}")
    if isinstance(value, (int, float)):
        magnitude = float(value)
    elif isinstance(value, str):
        _unit_traps(value, kind, field)
        try:
            quantity = _registry().Quantity(value.strip())
        except Exception as exc:  # pint raises several unrelated exception types
            raise InputError(
                f"`{field}`: cannot read {value!r} as {what} ({exc}); write it like {example!r}"
            ) from None
        if isinstance(quantity, (int, float)) or quantity.dimensionless:
            raise InputError(f"`{field}`: {value!r} has no unit; write {what} like {example!r}")
        try:
            magnitude = float(quantity.to(unit).magnitude)
        except pint.DimensionalityError:
            raise InputError(
                f"`{field}`: {value!r} is not {what}; write it like {example!r}"
            ) from None
    else:
        raise InputError(f"`{field}`: expected {what} such as {example!r}, got {value!r}")
    if not math.isfinite(magnitude) or magnitude < 0 or (positive and magnitude == 0):
        bound = "positive" if positive else "zero or more"
        raise InputError(f"`{field}`: must be {bound}, got {value!r}")
    return magnitude


def format_bytes(n: float) -> str:
    """Bytes in binary units for people: ``format_bytes(3 * 2**30) == '3.00 GiB'``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def format_seconds(t: float) -> str:
    """Seconds for people: ``format_seconds(0.0123) == '12.30 ms'``."""
    if abs(t) >= 1:
        return f"{t:.3f} s"
    if abs(t) >= 1e-3:
        return f"{t * 1e3:.2f} ms"
    return f"{t * 1e6:.1f} µs"
