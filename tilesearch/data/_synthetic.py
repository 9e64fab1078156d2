"""Calibration images synthesised for a model when no data set is given.

Three sources, each an :class:`ImageSource` in a registry (:func:`register_source`):

- ``synthetic-bn``: inputs optimised until every BatchNorm layer's batch mean and
  standard deviation match its running statistics (ZeroQ, Cai et al., CVPR 2020;
  DeepInversion, Yin et al., CVPR 2020), with a small total-variation prior.
- ``procedural``: dead-leaves images (occluding disks with radii drawn from
  p(r) ~ r^-3, scale-invariant like natural images, Lee et al. 2001) over a
  1/f-spectrum texture, then matched to the model's normalisation statistics.
- ``noise``: Gaussian noise in the model's normalised input space, the floor.

Every source returns uint8 pixels (N x 3 x H x W), like decoded images, so scorers
take them unchanged. :func:`synthetic_images` caches them per model weights,
input size, normalisation, source, count and seed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from tilesearch.core import DataError, UnknownNameError
from tilesearch.data._cache import load_cache, save_cache

SYNTHESIS_VERSION = 1  # part of the cache key: bump when a source's images change
Progress = Callable[[int], None]  # called with the number of images (or steps) just done


class ImageSource:
    """One way to make calibration images for a model; subclasses implement :meth:`synthesise`."""

    name: str = ""
    summary: str = ""
    caveat: str = ""  # what benchmarks/data_free.py found wanting in its ranking, said when a run uses it

    def check(self, model: nn.Module) -> None:
        """Refuse a model this source cannot work with (one line), before anything is made."""

    def work(self, count: int) -> int:
        """Units of progress :meth:`synthesise` reports for ``count`` images."""
        return count

    def synthesise(self, model: nn.Module, count: int, size: tuple[int, int], mean: tuple[float, ...],
                   std: tuple[float, ...], seed: int, device: torch.device, progress: Progress) -> Tensor:
        """``count`` uint8 images (count x 3 x H x W)."""
        raise NotImplementedError


def _to_pixels(normalised: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """Inputs in the model's normalised space -> uint8 pixels (the inverse of ``data.normalize``)."""
    mean_, std_ = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return ((normalised.float().cpu() * std_ + mean_) * 255).round().clamp(0, 255).to(torch.uint8)


class NoiseSource(ImageSource):
    name = "noise"
    summary = "Gaussian noise in the model's normalised input space (the floor)"
    caveat = ("noise ranked configs at Spearman 0.68 against held-out accuracy on the demo network "
              "(benchmarks/data_free.py; procedural 0.94): use its front as a floor, not for decisions")

    def synthesise(self, model, count, size, mean, std, seed, device, progress):
        generator = torch.Generator().manual_seed(seed)
        images = _to_pixels(torch.randn((count, 3, *size), generator=generator), mean, std)
        progress(count)
        return images


def pink_noise(count: int, size: tuple[int, int], generator: torch.Generator, exponent: float = 1.0) -> Tensor:
    """Noise with a 1/f^exponent amplitude spectrum, per image and channel, scaled to unit variance."""
    height, width = size
    fy = torch.fft.fftfreq(height).view(-1, 1)
    fx = torch.fft.rfftfreq(width).view(1, -1)
    frequency = torch.sqrt(fy**2 + fx**2)
    frequency[0, 0] = 1.0 / max(height, width)
    spectrum = torch.randn((count, 3, height, width // 2 + 1, 2), generator=generator)
    spectrum = torch.view_as_complex(spectrum) / frequency**exponent
    spectrum[..., 0, 0] = 0
    field = torch.fft.irfft2(spectrum, s=(height, width))
    return field / field.flatten(1).std(dim=1).view(-1, 1, 1, 1).clamp_min(1e-8)


def dead_leaves(count: int, size: tuple[int, int], generator: torch.Generator, shapes: int = 400) -> Tensor:
    """Dead-leaves images in [0, 1]: ``shapes`` random-coloured disks painted back to front, radii ~ r^-3."""
    height, width = size
    r_min, r_max = max(1.0, min(size) / 64), min(size) / 2
    ys = torch.arange(height, dtype=torch.float32).view(1, -1, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, -1)
    canvas = torch.rand((count, 3, 1, 1), generator=generator).expand(count, 3, height, width).clone()
    for _ in range(shapes):
        u = torch.rand(count, generator=generator)
        radius = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5  # inverse CDF of p(r) ~ r^-3 on [r_min, r_max]
        cy = torch.rand(count, generator=generator) * height
        cx = torch.rand(count, generator=generator) * width
        inside = (ys - cy.view(-1, 1, 1)) ** 2 + (xs - cx.view(-1, 1, 1)) ** 2 <= radius.view(-1, 1, 1) ** 2
        colour = torch.rand((count, 3, 1, 1), generator=generator)
        canvas = torch.where(inside.unsqueeze(1), colour, canvas)
    return canvas


class ProceduralSource(ImageSource):
    name = "procedural"
    summary = "dead-leaves images over 1/f texture, matched to the model's normalisation statistics"
    chunk = 32

    def synthesise(self, model, count, size, mean, std, seed, device, progress):
        generator = torch.Generator().manual_seed(seed)
        chunks = []
        for start in range(0, count, self.chunk):
            n = min(self.chunk, count - start)
            images = dead_leaves(n, size, generator) + 0.08 * pink_noise(n, size, generator)
            # Per image and channel to zero mean and unit variance in the model's normalised space, as a
            # natural image normalised by its data set's statistics is on average.
            flat = images.flatten(2)
            normalised = (flat - flat.mean(2, keepdim=True)) / flat.std(2, keepdim=True).clamp_min(1e-6)
            chunks.append(_to_pixels(normalised.view_as(images), mean, std))
            progress(n)
        return torch.cat(chunks)


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """BatchNorm layers that keep running statistics (timm's BatchNormAct2d included)."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None and m.running_var is not None]


class BatchNormMatchingSource(ImageSource):
    """ZeroQ's distilled data: inputs optimised so each BatchNorm layer sees its running statistics."""

    name = "synthetic-bn"
    summary = "inputs optimised to match every BatchNorm layer's running mean and variance (ZeroQ)"
    chunk, lr, tv_weight = 64, 0.1, 1e-4

    def __init__(self, steps: int = 200, class_target: bool = False) -> None:
        # class_target: DeepInversion's cross-entropy towards a random class per image, for networks whose
        # output is (batch, classes) logits
        self.steps, self.class_target = steps, class_target

    def check(self, model: nn.Module) -> None:
        if not batchnorm_layers(model):
            raise DataError(f"{type(model).__name__} has no BatchNorm layer with running statistics, so "
                            f"--data-source synthetic-bn has nothing to match: use --data-source procedural")

    def work(self, count: int) -> int:
        return math.ceil(count / self.chunk) * self.steps

    def synthesise(self, model, count, size, mean, std, seed, device, progress):
        generator = torch.Generator().manual_seed(seed)
        chunks = []
        for start in range(0, count, self.chunk):
            n = min(self.chunk, count - start)
            start_from = torch.randn((n, 3, *size), generator=generator)
            chunks.append(_to_pixels(self.optimise(model, start_from, mean, std, device, progress), mean, std))
        return torch.cat(chunks)

    def optimise(self, model: nn.Module, inputs: Tensor, mean, std, device: torch.device,
                 progress: Progress = lambda _: None, steps: int | None = None, losses: list | None = None) -> Tensor:
        """``inputs`` (normalised) after ``steps`` Adam steps on the BatchNorm-matching loss; ``losses``
        collects the loss of each step."""
        model = model.to(device).eval()
        mean_, std_ = torch.tensor(mean, device=device).view(1, 3, 1, 1), torch.tensor(std, device=device).view(1, 3, 1, 1)
        low, high = -mean_ / std_, (1 - mean_) / std_  # the normalised range of real pixels
        inputs = inputs.to(device).clamp(low, high).requires_grad_(True)
        optimiser = torch.optim.Adam([inputs], lr=self.lr)
        targets = None
        with _matching_statistics(model) as terms, torch.enable_grad():
            for _ in range(steps or self.steps):
                terms.clear()
                optimiser.zero_grad(set_to_none=True)
                output = model(inputs)
                if self.class_target and isinstance(output, Tensor) and output.dim() == 2:
                    if targets is None:
                        generator = torch.Generator().manual_seed(len(inputs))
                        targets = torch.randint(output.shape[1], (len(inputs),), generator=generator).to(device)
                    terms.append(nn.functional.cross_entropy(output.float(), targets))
                tv = (inputs[..., 1:, :] - inputs[..., :-1, :]).abs().mean() + (inputs[..., 1:] - inputs[..., :-1]).abs().mean()
                loss = torch.stack(terms).sum() + self.tv_weight * tv
                loss.backward()
                optimiser.step()
                with torch.no_grad():
                    inputs.copy_(torch.maximum(torch.minimum(inputs, high), low))
                if losses is not None:
                    losses.append(float(loss.detach()))
                progress(1)
        return inputs.detach()


@contextlib.contextmanager
def _matching_statistics(model: nn.Module) -> Iterator[list[Tensor]]:
    """While open, every forward appends to the yielded list each BatchNorm layer's distance between the batch's
    statistics and its running ones (ZeroQ's loss terms); the model's parameters are frozen meanwhile."""
    terms: list[Tensor] = []

    def match(module: nn.modules.batchnorm._BatchNorm, args: tuple, _output) -> None:
        x = args[0].float()
        dims = [d for d in range(x.dim()) if d != 1]
        batch_mean, batch_std = x.mean(dims), x.var(dims, unbiased=False).add(module.eps).sqrt()
        running_std = module.running_var.float().add(module.eps).sqrt()
        terms.append(torch.linalg.vector_norm(batch_mean - module.running_mean.float())
                     + torch.linalg.vector_norm(batch_std - running_std))

    hooks = [layer.register_forward_hook(match) for layer in batchnorm_layers(model)]
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in frozen:
            p.requires_grad_(False)
        yield terms
    finally:
        for hook in hooks:
            hook.remove()
        for p, requires_grad in frozen:
            p.requires_grad_(requires_grad)


_SOURCES: dict[str, ImageSource] = {}
DEFAULT_SOURCE = "procedural"  # ranked configs best on average in benchmarks/data_free.py (README), in seconds


def register_source(source: ImageSource) -> ImageSource:
    """Add an image source under ``source.name`` (``--data-source NAME``)."""
    _SOURCES[source.name] = source
    return source


for _source in (BatchNormMatchingSource(), ProceduralSource(), NoiseSource()):
    register_source(_source)


def image_sources() -> list[str]:
    return list(_SOURCES)


def get_source(name: str) -> ImageSource:
    """The image source called ``name``, or one line listing the known ones."""
    if name not in _SOURCES:
        raise UnknownNameError(f"unknown data source {name!r}: expected one of {', '.join(_SOURCES)}")
    return _SOURCES[name]


def weights_digest(model: nn.Module) -> str:
    """A digest of every tensor in the model's state dict: a checkpoint, pretrained or seeded weights alike."""
    digest = hashlib.sha1()
    for key, tensor in model.state_dict().items():
        digest.update(f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def synthesis_key(model_name: str, weights: str, size: tuple[int, int], mean, std, source: str, count: int,
                  seed: int) -> str:
    """The cache key of synthesised images: what they depend on, and nothing else."""
    recipe = {"model": model_name, "weights": weights, "size": list(size), "mean": [float(m) for m in mean],
              "std": [float(s) for s in std], "source": source, "count": count, "seed": seed, "version": SYNTHESIS_VERSION}
    return hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def synthetic_images(
    model: nn.Module,
    model_name: str,
    source: str | ImageSource,
    count: int,
    size: tuple[int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    seed: int = 0,
    device: torch.device | str = "cpu",
    cache_dir: Path | None = None,
    show_progress: bool = True,
) -> Tensor:
    """``count`` uint8 images from ``source`` for ``model`` at ``size``, made once and cached in ``cache_dir``.

    The model must be the untiled SE network; it is left in eval mode with its parameters as they were."""
    from rich.progress import Progress as Bar

    source = get_source(source) if isinstance(source, str) else source
    if count < 1:
        raise DataError(f"invalid number of images to synthesise {count}: expected a positive integer")
    source.check(model)
    key = synthesis_key(model_name, weights_digest(model), size, mean, std, source.name, count, seed)
    path = None if cache_dir is None else Path(cache_dir) / f"synthetic-{source.name}-{key}.pt"
    cached = load_cache(path, ("pixels",))
    if cached is not None:
        return cached["pixels"]
    with Bar(disable=not show_progress, transient=True) as bar:
        task = bar.add_task(f"synthesising {count} images ({source.name})", total=source.work(count))
        pixels = source.synthesise(model, count, tuple(size), tuple(mean), tuple(std), seed, torch.device(device),
                                   lambda done: bar.advance(task, done))
    save_cache(path, {"pixels": pixels})
    return pixels
