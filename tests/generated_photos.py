"""Photo-like test pictures, shared by tests/test_photos.py and benchmarks/bench.py."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like picture: smooth colour gradients, sensor noise, hard-edged objects."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 3, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 2, height, dtype=np.float32)[:, None, None]
    phase = np.arange(3, dtype=np.float32)
    pixels = 128 + 100 * np.sin(x + phase) * np.cos(y - phase)
    pixels += rng.standard_normal((height, width, 3), dtype=np.float32) * 6
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        left, top = int(rng.integers(0, width)), int(rng.integers(0, height))
        right = left + int(rng.integers(width // 20, width // 4))
        bottom = top + int(rng.integers(height // 20, height // 4))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((left, top, right, bottom), fill=colour)
    return image
