"""Input sizes as users type them: ``224`` (square) or ``1024x2048`` (height x width).

Segmentation networks run on non-square inputs (Cityscapes at 1024x2048, Vosco et
al., Table 6), so every size a command or the API accepts goes through
:func:`parse_input_size` and is a (height, width) pair from then on.
"""

from __future__ import annotations

import re

from tilesearch.core._errors import TilesearchError

InputSize = tuple[int, int]
_SIZE = re.compile(r"\s*(\d+)\s*(?:[xX×]\s*(\d+)\s*)?")
_ACCEPTED = "a positive integer such as 224 (square) or HEIGHTxWIDTH such as 1024x2048"


def parse_input_size(value: str | int | tuple[int, int] | list[int] | None) -> InputSize | None:
    """``"224"`` or ``224`` -> (224, 224); ``"1024x2048"`` or ``(1024, 2048)`` -> (1024, 2048); None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TilesearchError(f"invalid input size {value!r}: expected {_ACCEPTED}")
    if isinstance(value, int):
        sides = (value, value)
    elif isinstance(value, (tuple, list)):
        sides = tuple(value) if len(value) == 2 else ()
    else:
        match = _SIZE.fullmatch(str(value))
        sides = () if match is None else (int(match[1]), int(match[2] or match[1]))
    if len(sides) != 2 or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in sides):
        raise TilesearchError(f"invalid input size {value!r}: expected {_ACCEPTED}")
    return sides

