"""Image bytes → pixel arrays, and the raw-pixel baseline a learned model must beat."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

MODEL_SIZE = 32  # pixels a side the CNN sees (64 px: 2.9x the training step time on a 2-core CPU)
DISPLAY_SIZE = 64  # pixels a side in the neighbour grid picture
BASELINE_SIZE = 24  # raw-pixel baseline: downscaled RGB, as measured on 20k real H&M photos


def decode(contents: Sequence[bytes], size: int = MODEL_SIZE) -> np.ndarray:
    """(n, size, size, 3) uint8 from encoded images (any size; resized with antialiasing)."""
    out = np.zeros((len(contents), size, size, 3), dtype=np.uint8)
    for i, content in enumerate(contents):
        with Image.open(io.BytesIO(content)) as image:
            out[i] = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    return out


def augmented_copies(pixels: np.ndarray, copies: int, seed: int, zoom: float = 0.8) -> np.ndarray:
    """`copies` variants of every image (n * copies, size, size, 3): mirrored half the time and zoomed into
    a random square of `zoom`..1 of the side. Why: real product photos vary in framing more than rendered
    ones, and a model that saw only one framing matches framing (docs/journal.md)."""
    rng = np.random.default_rng(seed)
    size = pixels.shape[1]
    out = np.empty((len(pixels) * copies, *pixels.shape[1:]), dtype=pixels.dtype)
    for i in range(len(out)):
        image = Image.fromarray(pixels[i % len(pixels)])
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        side = size * rng.uniform(zoom, 1.0)
        x0, y0 = rng.uniform(0, size - side, 2)
        box = (x0, y0, x0 + side, y0 + side)
        out[i] = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=box))
    return out


def raw_pixel_vectors(pixels: np.ndarray, size: int = BASELINE_SIZE) -> np.ndarray:
    """Unit-length downscaled RGB vectors (mean-centred per image): the cosine-neighbour baseline."""
    small = np.stack(
        [np.asarray(Image.fromarray(p).resize((size, size), Image.Resampling.BILINEAR)) for p in pixels]
    ).astype(np.float32)
    flat = small.reshape(len(small), -1) / 255.0
    flat -= flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-6)
