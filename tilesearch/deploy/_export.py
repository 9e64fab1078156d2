"""Export a chosen config: its tile-config YAML, its weights and an ONNX graph checked with onnxruntime.

The ONNX graph keeps the tiled squeeze and the per-tile broadcast in standard
operators (AveragePool, Reshape, Tile, Slice, Mul) that accelerator compilers
accept, with a static input shape, and is checked against PyTorch on real images.
"""

from __future__ import annotations

import json
import warnings
from contextlib import ExitStack
from pathlib import Path

import torch
from torch import nn

from tilesearch.core import (
    DataError,
    TilesearchError,
    buffer_report,
    config_document,
    load_profile,
    save_config,
    staged_files,
    write_text_atomically,
)
from tilesearch.deploy._choice import choose_config
from tilesearch.deploy._finetune import finetuned_weights, report_scorer, save_weights
from tilesearch.nn import apply_tiles
from tilesearch.scoring import segmentation_logits
from tilesearch.search import blocks_from_run, prepare_resume, read_run_file
from tilesearch.zoo import load_checkpoint

FORMATS = ("yaml", "safetensors", "onnx")


class _Logits(nn.Module):
    """A segmenter up to its logits: torchvision's ``{"out": logits, "aux": ...}`` as the logits alone."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return segmentation_logits(self.model(x))


def _flat_outputs(outputs) -> list[torch.Tensor]:
    """A classifier's logits, a segmenter's, or an effdet model's (class maps, box maps) per pyramid level, as a flat list."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        return [segmentation_logits(outputs)]
    return [tensor for group in outputs for tensor in _flat_outputs(group)]


def _output_names(model: nn.Module, example: torch.Tensor) -> list[str]:
    with torch.inference_mode():
        outputs = model(example)
    if isinstance(outputs, torch.Tensor):
        return ["output"]
    class_maps, box_maps = outputs
    return [f"class_{i}" for i in range(len(class_maps))] + [f"box_{i}" for i in range(len(box_maps))]


def export_onnx(model: nn.Module, path: Path, input_size: tuple[int, int], opset: int = 17) -> None:
    """The tiled model as ONNX with a static 1x3xHxW input (dataflow compilers want static shapes).

    A detector is exported without its box decoding and NMS (effdet's ``DetBenchPredict``), which
    run on the host: one class map and one box map per pyramid level. A segmenter that returns a
    dict is exported up to its logits (``out``), without auxiliary heads.
    """
    example = torch.zeros(1, 3, *input_size)
    model.eval()
    with torch.inference_mode():
        if isinstance(model(example), dict):
            model = _Logits(model).eval()  # the exporter runs a module in its own mode: a new one trains
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python ints in the tile arithmetic
        torch.onnx.export(model, (example,), str(path), opset_version=opset, dynamo=False,
                          input_names=["input"], output_names=_output_names(model, example))


def onnx_parity(model: nn.Module, path: Path, inputs: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime and PyTorch outputs on ``inputs`` (one at a time)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.inference_mode():
        for image in inputs:
            expected = _flat_outputs(model(image[None]))
            got = session.run(None, {"input": image[None].numpy()})
            worst = max(worst, *(float(abs(g - e.numpy()).max()) for g, e in zip(got, expected)))
    return worst


def export(
    run_dir: str | Path,
    formats: str = "all",
    trial: int | None = None,
    config: str | Path | None = None,
    out: str | Path | None = None,
    parity_images: int = 8,
) -> dict:
    """Export the chosen config: YAML, weights (fine-tuned if ``final/`` matches) and ONNX.

    All or nothing: the files are written to a staging folder and moved into ``out`` once every one of them
    is written and checked, ``export.json`` (which lists them) last."""
    wanted = FORMATS if formats == "all" else (formats,)
    if any(fmt not in FORMATS for fmt in wanted):
        raise TilesearchError(f"unknown export format {formats!r}: expected one of {', '.join(FORMATS)} or all")
    run_dir = Path(run_dir)
    choice = choose_config(run_dir, trial, config)
    document = read_run_file(run_dir)
    out = Path(out) if out is not None else run_dir / "export"
    with ExitStack() as stack:
        try:
            staging = stack.enter_context(staged_files(out, last="export.json"))
        except OSError as error:
            raise DataError(f"cannot write to {str(out)!r}: {error.strerror or error}") from error
        result = _export_to(staging, run_dir, document, choice, wanted, parity_images)
        result["files"] = {kind: str(out / Path(path).name) for kind, path in result["files"].items()}
        write_text_atomically(staging / "export.json", json.dumps(result, indent=2))
    return result


def _export_to(folder: Path, run_dir: Path, document: dict, choice, wanted: tuple[str, ...], parity_images: int) -> dict:
    blocks = blocks_from_run(document)
    report = buffer_report(blocks, choice.tiles, load_profile(document["settings"]["profile"]))
    input_size = tuple(document["preprocessing"]["input_size"])
    result: dict = {"config": choice.label, "files": {}}
    if "yaml" in wanted:
        path = save_config(folder / "config.yaml", config_document(document["settings"]["model"], input_size, report,
                                                                   {"trial": choice.trial}))
        result["files"]["yaml"] = str(path)
    if "safetensors" in wanted or "onnx" in wanted:
        search = prepare_resume(run_dir)
        if "onnx" in wanted:  # real images for the parity check (a scorer may move the model: take them first)
            pixels = report_scorer(search).images.pixels[:parity_images].cpu()
        model = search.parts.model.cpu()
        weights = finetuned_weights(run_dir, choice.tiles)
        if weights is not None:
            load_checkpoint(model, weights)
        result["weights"] = "fine-tuned (final/model.safetensors)" if weights else "original SE weights"
        model = apply_tiles(model, choice.tiles).eval()
        if "safetensors" in wanted:
            path = save_weights(model, folder / "model.safetensors", metadata={"tilesearch_config": json.dumps(choice.tiles)})
            result["files"]["safetensors"] = str(path)
        if "onnx" in wanted:
            export_onnx(model, folder / "model.onnx", input_size)
            result["onnx_max_abs_diff"] = onnx_parity(model, folder / "model.onnx", search.preprocessing.normalize(pixels))
            result["files"]["onnx"] = str(folder / "model.onnx")
    return result
