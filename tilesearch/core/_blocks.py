"""What the cost model and the search know of one SE block: its name and the tensor it sees.

Discovery (:mod:`tilesearch.nn`) fills these in from a traced forward; run folders
record them, so a run can be costed, resumed and exported without building the
model again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SEBlock:
    """One SE block of a model and the input it sees at a given input size."""

    name: str
    stage: int | None
    kind: str
    channels: int
    height: int
    width: int
    excite_macs: int

    @property
    def se_buffer(self) -> int:
        """Elements the original SE block buffers: its whole input (Vosco et al., section 3.2)."""
        return self.channels * self.height * self.width

    def to_dict(self) -> dict:
        return asdict(self)
