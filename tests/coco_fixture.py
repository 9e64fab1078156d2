"""A small COCO-format data set drawn by the tests: coloured boxes and discs (two categories) on noise."""

import json
from pathlib import Path

import numpy as np


def write_coco_fixture(root: str | Path, n_images: int = 8, seed: int = 0, size: tuple[int, int] = (160, 128)) -> tuple[Path, Path]:
    """A small COCO-format data set drawn here: coloured boxes and discs (two categories) on noise.

    Returns (images folder, annotations JSON path); the same seed draws the same files.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    root = Path(root)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    width, height = size
    images, annotations = [], []
    for image_id in range(1, n_images + 1):
        canvas = Image.fromarray(rng.integers(60, 140, (height, width, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(1, 4))):
            w, h = (int(v) for v in rng.integers(16, 48, 2))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            category = int(rng.integers(1, 3))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.rectangle if category == 1 else draw.ellipse)([x, y, x + w - 1, y + h - 1], fill=colour)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        name = f"{image_id:06d}.png"
        canvas.save(images_dir / name)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "box"}, {"id": 2, "name": "disc"}]}))
    return images_dir, path
