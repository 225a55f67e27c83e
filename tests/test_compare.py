"""`vsrealbasicvsr compare`: the PNG is decoded back (by ffmpeg, not by the library that wrote it)
and its halves are checked pixel by pixel against pictures the test computes on its own.

The "videos" are random frames written losslessly (FFV1), so the expected pixels are known: the
right half is the upscaled frame's crop, the left half a Catmull-Rom bicubic x4 of the input
frame computed here in numpy.
"""

import os
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from vsrealbasicvsr.frontends.cli import main
from vsrealbasicvsr.frontends.compare import DIVIDER, LABEL_HEIGHT

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
WIDTH, HEIGHT, FRAMES = 32, 24, 3
# In upscaled pixels, away from the frame's edges (where resizers differ in how they extend it).
CROP = (40, 32, 8, 12)  # width, height, left, top


def write_video(path, frames: np.ndarray, pixel_format: str, *tags: str) -> None:
    """(n, h, w, 3) uint8 frames, packed as `pixel_format` (rgb24, or yuv444p's planes as y, u, v),
    into a lossless FFV1 file."""
    _, height, width, _ = frames.shape
    data = frames if pixel_format == "rgb24" else np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
    encoded = "gbrp" if pixel_format == "rgb24" else pixel_format
    subprocess.run(
        [
            FFMPEG,
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            pixel_format,
            "-s",
            f"{width}x{height}",
            "-framerate",
            "25",
            "-i",
            "pipe:0",
            "-c:v",
            "ffv1",
            "-pix_fmt",
            encoded,
            *tags,
            str(path),
        ],
        input=data.tobytes(),
        check=True,
    )


def decode_png(path) -> np.ndarray:
    """The PNG as an (h, w, 3) uint8 array, decoded by ffmpeg."""
    header = path.read_bytes()[16:24]
    width, height = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")
    raw = subprocess.run(
        [FFMPEG, "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


def catmull_rom_x4(image: np.ndarray) -> np.ndarray:
    """Keys' cubic (a = -1/2) upscaling by 4 of an (h, w, 3) image, edges repeated."""

    def weights(size: int) -> np.ndarray:
        matrix = np.zeros((4 * size, size))
        for out in range(4 * size):
            centre = (out + 0.5) / 4 - 0.5
            first = int(np.floor(centre)) - 1
            for tap in range(first, first + 4):
                x = abs(centre - tap)
                w = 1.5 * x**3 - 2.5 * x**2 + 1 if x <= 1 else -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
                matrix[out, min(max(tap, 0), size - 1)] += w
        return matrix

    height, width, _ = image.shape
    result = np.einsum("oh,hwc,pw->opc", weights(height), image.astype(np.float64), weights(width))
    return np.clip(np.rint(result), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """(input, upscaled, their frames): random RGB frames, the 'upscale' random frames of 4x the size."""
    folder = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    large = rng.integers(0, 256, (FRAMES, 4 * HEIGHT, 4 * WIDTH, 3), dtype=np.uint8)
    write_video(folder / "in.mkv", small, "rgb24")
    write_video(folder / "up.mkv", large, "rgb24")
    return folder / "in.mkv", folder / "up.mkv", small, large


def halves(picture: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The left and right pictures, below the label band."""
    return picture[LABEL_HEIGHT:, :width], picture[LABEL_HEIGHT:, width + DIVIDER :]


def test_halves_are_bicubic_x4_and_the_upscaled_crop(videos, tmp_path, capsys):
    source, upscaled, small, large = videos
    output = tmp_path / "side.png"
    width, height, left, top = CROP
    assert (
        main(
            [
                "compare",
                str(source),
                str(upscaled),
                str(output),
                "--frame",
                "1",
                "--crop",
                f"{width}x{height}+{left}+{top}",
                "--label",
                "tiny x4",
            ]
        )
        == 0
    )
    assert str(output) in capsys.readouterr().out
    picture = decode_png(output)
    assert picture.shape == (LABEL_HEIGHT + height, 2 * width + DIVIDER, 3)
    bicubic, ours = halves(picture, width)
    region = np.s_[top : top + height, left : left + width]
    assert np.array_equal(ours, large[1][region])
    # Float rounding of the resizer may move a value by one level; Mitchell's filter (b = c = 1/3)
    # or a shifted crop would be tens of levels off on random pixels.
    difference = np.abs(bicubic.astype(int) - catmull_rom_x4(small[1])[region])
    assert difference.max() <= 1
    # Each label is drawn on its half of the band.
    band = picture[:LABEL_HEIGHT].max(axis=2)
    assert band[:, :width].max() > 200 and band[:, width + DIVIDER :].max() > 200


# Tagged frames are converted with their tags; untagged ones as `vsrealbasicvsr upscale` reads
# them: BT.601 below 1280x720, limited range.
@pytest.mark.parametrize(
    "tags,kr,kb",
    [
        (["-vf", "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv"], 0.2126, 0.0722),
        ([], 0.299, 0.114),
    ],
    ids=["bt709-tagged", "untagged-sd"],
)
def test_yuv_is_read_with_its_matrix_and_range(tmp_path, tags, kr, kb):
    """Limited-range YUV 4:4:4: the right half is the standard conversion to RGB."""
    rng = np.random.default_rng(1)
    yuv = np.stack(
        [
            rng.integers(16, 236, (1, 4 * HEIGHT, 4 * WIDTH)),
            rng.integers(16, 241, (1, 4 * HEIGHT, 4 * WIDTH)),
            rng.integers(16, 241, (1, 4 * HEIGHT, 4 * WIDTH)),
        ],
        axis=-1,
    ).astype(np.uint8)
    # (setparams tags the frames; ffmpeg's output options -colorspace etc. would convert them.)
    write_video(tmp_path / "up.mkv", yuv, "yuv444p", *tags)
    write_video(tmp_path / "in.mkv", yuv[:, ::4, ::4], "yuv444p", *tags)
    assert (
        main(
            [
                "compare",
                str(tmp_path / "in.mkv"),
                str(tmp_path / "up.mkv"),
                str(tmp_path / "c.png"),
                "--crop",
                f"{4 * WIDTH}x{4 * HEIGHT}+0+0",
            ]
        )
        == 0
    )
    _, ours = halves(decode_png(tmp_path / "c.png"), 4 * WIDTH)
    planes = yuv[0].astype(np.float64)
    y = (planes[..., 0] - 16) / 219
    u, v = (planes[..., 1] - 128) / 224, (planes[..., 2] - 128) / 224
    r = y + 2 * (1 - kr) * v
    b = y + 2 * (1 - kb) * u
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    expected = np.clip(np.rint(np.stack([r, g, b], axis=-1) * 255), 0, 255)
    assert np.abs(ours.astype(int) - expected).max() <= 1


def test_default_output_frame_and_crop(videos, capsys):
    source, upscaled, _, large = videos
    default = upscaled.with_name("up_compare.png")
    umask = os.umask(0o022)
    try:
        assert main(["compare", str(source), str(upscaled)]) == 0
    finally:
        os.umask(umask)
    assert default.stat().st_mode & 0o777 == 0o644  # readable by others, as any file the user makes
    assert sorted(path.name for path in default.parent.iterdir()) == ["in.mkv", "up.mkv", "up_compare.png"]
    printed = capsys.readouterr().out
    assert str(default) in printed and "frame 1, crop 64x48+32+24" in printed
    _, ours = halves(decode_png(default), 4 * WIDTH // 2)
    assert np.array_equal(ours, large[FRAMES // 2][24:72, 32:96])
    default.unlink()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--crop", "64x48+100+0"], "does not fit the upscaled 128x96; choose a crop inside it"),
        (["--crop", "64+48"], "is not a crop; write it as WIDTHxHEIGHT+LEFT+TOP"),
        (["--frame", "3"], "is not a frame of both videos; use 0 <= frame < 3"),
    ],
)
def test_bad_arguments_are_one_line_errors(videos, tmp_path, capsys, extra, message):
    source, upscaled, _, _ = videos
    assert main(["compare", str(source), str(upscaled), str(tmp_path / "c.png"), *extra]) == 1
    error = capsys.readouterr().err
    assert error.startswith("vsrealbasicvsr compare: error: ") and message in error and error.count("\n") == 1
    assert not (tmp_path / "c.png").exists()


def test_not_4x_and_existing_output_are_refused(videos, tmp_path, capsys):
    source, upscaled, _, _ = videos
    output = tmp_path / "c.png"
    assert main(["compare", str(upscaled), str(source), str(output)]) == 1
    assert "is 32x24, not 4x (nor, from a restoration model, 1x) the 128x96 of" in capsys.readouterr().err
    output.write_bytes(b"mine")
    assert main(["compare", str(source), str(source), str(output)]) == 1
    assert "exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert output.read_bytes() == b"mine"


def test_an_output_at_the_inputs_size_is_beside_the_input_itself(videos, tmp_path, capsys):
    """A restoration model (BasicVSR++ x1) keeps the size: the left half is the input, unscaled."""
    source, _, small, _ = videos
    output = tmp_path / "x1.png"
    assert main(["compare", str(source), str(source), str(output), "--frame", "1", "--crop", "16x12+4+4"]) == 0
    picture = decode_png(output)
    left, right = halves(picture, 16)
    assert np.array_equal(left, right)
    assert np.abs(left.astype(int) - small[1, 4:16, 4:20].astype(int)).max() <= 2  # as read back from the video


def test_a_link_at_the_temporary_name_is_never_written_through(videos, tmp_path, capsys):
    source, upscaled, _, _ = videos
    output = tmp_path / "c.png"
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (tmp_path / "c.png.part").symlink_to(victim)
    mine = tmp_path / "mine.png.part"  # the user's own file of that kind of name
    mine.write_bytes(b"mine")
    assert main(["compare", str(source), str(upscaled), str(output), "--crop", "8x8+0+0"]) == 0
    assert victim.read_text() == "mine" and mine.read_bytes() == b"mine"
    assert not output.is_symlink() and decode_png(output).shape[0] == LABEL_HEIGHT + 8
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


def test_an_output_in_a_missing_folder_is_a_one_line_error(videos, tmp_path, capsys):
    source, upscaled, _, _ = videos
    assert main(["compare", str(source), str(upscaled), str(tmp_path / "nowhere" / "c.png")]) == 1
    error = capsys.readouterr().err
    assert "does not exist; create it first" in error and error.count("\n") == 1
