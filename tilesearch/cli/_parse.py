"""Values typed on the command line, turned into what the Python API takes (or a one-line error)."""

from __future__ import annotations

from tilesearch.core import TilesearchError, parse_input_size


def parse_triple(text: str | None, label: str) -> tuple[float, float, float] | None:
    """``"0.485,0.456,0.406"`` (or space-separated) -> three floats."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", ",").split(",") if v)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise TilesearchError(f"invalid {label} {text!r}: expected three comma-separated numbers such as 0.485,0.456,0.406")
    return values


def model_options(options: dict) -> dict:
    """The WEIGHTS and PREPROCESSING options of a command as :class:`~tilesearch.search.RunSettings` fields."""
    parsed = {key: options[key] for key in ("checkpoint", "num_classes", "crop_pct", "interpolation")}
    parsed["random_weights"] = not options["pretrained"]
    parsed["input_size"] = parse_input_size(options["input_size"])
    parsed["mean"], parsed["std"] = parse_triple(options["mean"], "mean"), parse_triple(options["std"], "std")
    return parsed


def compute_options(options: dict) -> dict:
    """The COMPUTE options of a command that are run settings (``--skip-memory-check`` is not: see run)."""
    return {"batch_size": options["batch_size"], "device": options["device"], "strict_data": options["strict_data"]}


def check_positive(value: float | None, what: str, unit: str = "a positive integer") -> None:
    """A count or duration that must be positive when given."""
    if value is not None and value <= 0:
        raise TilesearchError(f"invalid {what} {value}: expected {unit}")
