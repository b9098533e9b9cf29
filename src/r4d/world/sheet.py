"""Contact sheets: one PNG showing a scene's sampled frames and signals, for a person to check."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import hsv_to_rgb
from PIL import Image, ImageDraw

from r4d.io.atomic import atomic_path

COLUMNS = ("rgb", "depth", "flow", "motion", "ids")
PAD = 2
HEADER = 14


def depth_image(depth: np.ndarray) -> np.ndarray:
    """Inverse depth through the turbo colour map (near = warm), invalid (0) black."""
    valid = depth > 0
    inv = np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0)
    lo, hi = np.percentile(inv[valid], [1, 99]) if valid.any() else (0.0, 1.0)
    scaled = np.clip((inv - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = matplotlib.colormaps["turbo"](scaled)[..., :3]
    return (np.where(valid[..., None], rgb, 0.0) * 255).astype(np.uint8)


def flow_image(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Optical flow (H, W, 2) on the usual colour wheel: hue = direction, saturation = speed."""
    mag = np.linalg.norm(flow, axis=-1)
    top = max_magnitude or max(float(np.percentile(mag, 99)), 1e-6)
    hue = (np.arctan2(flow[..., 1], flow[..., 0]) / (2 * np.pi)) % 1.0
    hsv = np.stack([hue, np.clip(mag / top, 0, 1), np.ones_like(hue)], axis=-1)
    return (hsv_to_rgb(hsv) * 255).astype(np.uint8)


def ids_image(ids: np.ndarray) -> np.ndarray:
    palette = (matplotlib.colormaps["tab10"](np.arange(10))[:, :3] * 255).astype(np.uint8)
    out = palette[(ids.astype(int) - 1) % 10]
    out[ids == 0] = 0
    return out


def contact_sheet(signals: dict, path: str | Path, max_frames: int = 8, title: str = "") -> None:
    """A grid: rows are up to `max_frames` sampled frames, columns RGB, depth, flow, motion, ids."""
    n = len(signals["rgb"])
    rows = np.unique(np.round(np.linspace(0, n - 1, min(n, max_frames))).astype(int))
    flow_top = max(float(np.percentile(np.linalg.norm(signals["flow"], axis=-1), 99)), 1e-6)
    h, w = signals["rgb"].shape[1:3]
    sheet = Image.new(
        "RGB", (len(COLUMNS) * (w + PAD) + PAD, HEADER + len(rows) * (h + PAD)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(COLUMNS):
        draw.text((PAD + c * (w + PAD), 1), name, fill=(0, 0, 0))
    if title:
        draw.text((sheet.width - 8 * len(title) - PAD, 1), title, fill=(90, 90, 90))
    for r, i in enumerate(rows):
        tiles = [
            signals["rgb"][i],
            depth_image(signals["depth"][i]),
            flow_image(signals["flow"][i], flow_top),
            np.repeat(signals["motion"][i][..., None].astype(np.uint8) * 255, 3, axis=-1),
            ids_image(signals["ids"][i]),
        ]
        for c, tile in enumerate(tiles):
            sheet.paste(Image.fromarray(tile), (PAD + c * (w + PAD), HEADER + r * (h + PAD)))
        draw.text(
            (PAD + 2, HEADER + r * (h + PAD) + 1),
            f"{signals['times'][i]:.2f}s",
            fill=(255, 255, 255),
        )
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
