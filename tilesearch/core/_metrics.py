"""The scores a search can optimise, and which way each one is better.

One :class:`Metric` per score says its direction, how to show it and whether it
needs labels; every comparison, drop, plot axis and printed figure goes through
it, so no code outside this module asks which metric it is holding.
"""

from __future__ import annotations

from dataclasses import dataclass

from tilesearch.core._errors import UnknownNameError

CLASSIFIER = "classifier"
DETECTOR = "detector"
SEGMENTER = "segmenter"


@dataclass(frozen=True)
class Metric:
    """A score of a tile config: its name, direction, axis label and unit."""

    name: str
    direction: str  # "maximize" or "minimize", as Optuna spells it
    label: str
    unit: str  # "%" for fractions shown as percentages, else the unit of the raw value
    tasks: tuple[str, ...]  # CLASSIFIER, DETECTOR, SEGMENTER
    needs_labels: bool = False

    @property
    def sign(self) -> float:
        """+1 when larger is better, -1 when smaller is."""
        return 1.0 if self.direction == "maximize" else -1.0

    @property
    def scale(self) -> float:
        """Factor from the stored value to the shown one (fractions are shown as percentages)."""
        return 100.0 if self.unit == "%" else 1.0

    def worse_by(self, reference: float, value: float) -> float:
        """How much worse ``value`` is than ``reference``: positive when worse, whatever the direction."""
        return self.sign * (reference - value) + 0.0  # + 0.0: no "-0.0" for a config equal to SE

    def worsened(self, reference: float, worse_by: float) -> float:
        """The value that is ``worse_by`` worse than ``reference`` (the inverse of :meth:`worse_by`)."""
        return reference - self.sign * worse_by

    def rank_key(self, value: float) -> float:
        """Sort key that puts the best value first."""
        return -self.sign * value

    def format(self, value: float) -> str:
        """``0.8523`` -> ``85.23%``; a raw unit with four significant digits (divergences can be 1e-6)."""
        return f"{self.scale * value:.2f}%" if self.unit == "%" else f"{value:.4g}"

    def format_drop(self, drop: float) -> str:
        """A drop versus SE: points for percentages, the raw unit otherwise."""
        return f"{self.scale * drop:.2f} pts" if self.unit == "%" else f"{drop:.4g}"


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("accuracy", "maximize", "zero-shot top-1 accuracy", "%", (CLASSIFIER,), needs_labels=True),
        Metric("agreement", "maximize", "top-1 agreement with SE", "%", (CLASSIFIER,)),
        Metric("kl", "minimize", "mean KL divergence from SE", "nats", (CLASSIFIER,)),
        Metric("map", "maximize", "COCO mAP@[.5:.95]", "%", (DETECTOR,), needs_labels=True),
        Metric("pseudo_map", "maximize", "mAP against the SE model's detections", "%", (DETECTOR,)),
        Metric("miou", "maximize", "mean IoU over classes", "%", (SEGMENTER,), needs_labels=True),
        Metric("pixel_accuracy", "maximize", "pixel accuracy", "%", (SEGMENTER,), needs_labels=True),
        Metric("pseudo_miou", "maximize", "mIoU against the SE model's argmax", "%", (SEGMENTER,)),
        # Any network, any images: how far the tiled network's outputs moved from SE's (see scoring.fidelity).
        Metric("fidelity", "minimize", "divergence of the outputs from SE", "nats", (CLASSIFIER, DETECTOR, SEGMENTER)),
    )
}


def metrics_for(task: str) -> list[str]:
    """Names of the metrics of a task (``classifier``, ``detector`` or ``segmenter``)."""
    return [name for name, metric in METRICS.items() if task in metric.tasks]


def get_metric(name: str, task: str | None = None) -> Metric:
    """The metric called ``name`` (``pseudo-map`` and ``pseudo_map`` alike), optionally of ``task`` only."""
    key = str(name).replace("-", "_")
    allowed = metrics_for(task) if task else list(METRICS)
    if key not in allowed:
        kind = f" for a {task}" if task else ""
        raise UnknownNameError(f"unknown metric {name!r}{kind}: expected one of {', '.join(allowed)}")
    return METRICS[key]
