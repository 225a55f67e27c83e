"""Colour in the output's video stream: `vsrealbasicvsr upscale` writes the input's primaries,
transfer, matrix and range into the stream itself (H.264/H.265 VUI, PNG cICP), not only into the
container; HDR10 mastering metadata is carried over where the encoder can write it, and said to
be dropped where not; a 10-bit input stays 10 bits through the filter and out.

The inputs are 4 frames at 64x48 made here with the bundled ffmpeg (testsrc2, which has
gradients: a rounding through 8 bits shows), tagged as SDR BT.601 and BT.709, HDR10 (BT.2020 +
PQ, with mastering display and content light level SEI) and HLG (BT.2020 + ARIB STD-B67).
Streams are read back with ffmpeg's trace_headers bitstream filter, as a user checks them.
"""

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from conftest import stream_colour, stream_headers

from vsrealbasicvsr import job

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
FRAMES = 4
# H.273 codes: (primaries, transfer, matrix, full range)
BT601, BT709, HDR10, HLG = (6, 6, 6, 0), (1, 1, 1, 0), (9, 16, 9, 0), (9, 18, 9, 0)
# The HDR10 input's metadata as x265 writes it and trace_headers reads it back: the display's
# green, blue, red and white point in 0.00002, its luminance in 0.0001 cd/m2, MaxCLL and MaxFALL.
MASTERING = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
MASTERING_FIELDS = {
    "display_primaries_x[0]": 13250,
    "display_primaries_y[0]": 34500,
    "display_primaries_x[2]": 34000,
    "white_point_x": 15635,
    "max_display_mastering_luminance": 10000000,
    "min_display_mastering_luminance": 50,
    "max_content_light_level": 1000,
    "max_pic_average_light_level": 400,
}
CLIPS = {
    # name: (H.273 codes, pixel format, encoder and its options)
    "bt601": (BT601, "yuv420p", ["-c:v", "libx264"]),
    "bt709": (BT709, "yuv420p", ["-c:v", "libx264"]),
    "hdr10": (
        HDR10,
        "yuv420p10le",
        ["-c:v", "libx265", "-x265-params", f"log-level=error:master-display={MASTERING}:max-cll=1000,400"],
    ),
    "hlg": (HLG, "yuv420p10le", ["-c:v", "libx264"]),
}
NAMES = {
    "primaries": {1: "bt709", 6: "smpte170m", 9: "bt2020"},
    "transfer": {1: "bt709", 6: "smpte170m", 16: "smpte2084", 18: "arib-std-b67"},
    "matrix": {1: "bt709", 6: "smpte170m", 9: "bt2020nc"},
}


def make_clip(path, name):
    (primaries, transfer, matrix, full), pixel_format, encoder = CLIPS[name]
    tags = (
        f"setparams=color_primaries={NAMES['primaries'][primaries]}:color_trc={NAMES['transfer'][transfer]}"
        f":colorspace={NAMES['matrix'][matrix]}:range={'pc' if full else 'tv'}"
    )
    subprocess.run(
        [FFMPEG, "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s=64x48:r=25:d={FRAMES / 25}"]
        + ["-vf", tags, "-pix_fmt", pixel_format, *encoder, str(path)],
        check=True,
    )
    return path


def png_cicp(path) -> tuple[int, int, int, int] | None:
    """The cICP chunk of a PNG (primaries, transfer, matrix, full range), None without one."""
    data = path.read_bytes()
    at = 8
    while at < len(data):
        length, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
        if kind == b"cICP":
            return tuple(data[at + 8 : at + 12])
        at += 12 + length
    return None


def png_bit_depth(path) -> int:
    return path.read_bytes()[24]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("colour_clips")
    return {name: make_clip(folder / f"{name}.mkv", name) for name in CLIPS}


def upscale(clip, output, checkpoint, codec="libx264"):
    options = {"checkpoint": str(checkpoint), "max_seq_len": 2, "device": "cpu", "tile": -1}
    spec = job.new_spec(clip, output, options, codec=codec, scene_detect=False)
    result = job.run(spec)
    assert not result.cancelled and result.frames == FRAMES
    return output


def test_the_inputs_are_tagged_in_their_streams(clips):
    # What the rest checks against: the inputs' own streams say what they are.
    for name, path in clips.items():
        assert stream_colour(path) == CLIPS[name][0], name
    assert MASTERING_FIELDS.items() <= stream_headers(clips["hdr10"]).items()


@pytest.mark.parametrize(
    "name, codec",
    [("bt601", "libx264"), ("bt709", "libx264"), ("bt709", "libx265"), ("hdr10", "libx264"), ("hlg", "libx265")],
)
def test_the_output_stream_carries_the_inputs_colour(name, codec, clips, tiny_checkpoint, tmp_path):
    output = upscale(clips[name], tmp_path / f"{name}_x4.mp4", tiny_checkpoint, codec)
    assert stream_colour(output) == CLIPS[name][0]


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_hdr10_mastering_metadata_is_carried_over(codec, clips, tiny_checkpoint, tmp_path, capsys):
    output = upscale(clips["hdr10"], tmp_path / "hdr10_x4.mkv", tiny_checkpoint, codec)
    assert MASTERING_FIELDS.items() <= stream_headers(output).items()
    assert "HDR" not in capsys.readouterr().err


def test_ffv1_has_no_colour_fields_so_the_container_carries_them(clips, tiny_checkpoint, tmp_path, capsys):
    import av

    output = upscale(clips["hdr10"], tmp_path / "hdr10_x4.mkv", tiny_checkpoint, "ffv1")
    with av.open(str(output)) as container:
        context = container.streams.video[0].codec_context
        assert (context.color_primaries, context.color_trc, context.colorspace, context.color_range) == (9, 16, 9, 1)
    # FFV1 cannot hold the mastering display: the command says so.
    err = capsys.readouterr().err
    assert "HDR mastering display and light level metadata cannot be written with ffv1" in err
    assert "--codec libx264 or libx265 keeps them" in err


@pytest.mark.parametrize("name", ["bt709", "hdr10", "hlg"])
def test_png_frames_carry_primaries_and_transfer(name, clips, tiny_checkpoint, tmp_path, capsys):
    output = upscale(clips[name], tmp_path / "frames", tiny_checkpoint)
    frames = sorted(output.iterdir())
    assert len(frames) == FRAMES
    primaries, transfer, _, _ = CLIPS[name][0]
    # RGB (matrix 0), full range: the frames were converted from the source's YUV.
    assert png_cicp(frames[0]) == (primaries, transfer, 0, 1)
    assert png_bit_depth(frames[0]) == (16 if name != "bt709" else 8)
    assert ("cannot be written with PNG frames" in capsys.readouterr().err) == (name == "hdr10")


def test_ten_bit_input_keeps_ten_bits_through_the_filter_and_out(clips, tiny_checkpoint, tmp_path):
    from vsrealbasicvsr.job.graph import upscaled_clip
    from vsrealbasicvsr.job.source import open_video

    output = upscale(clips["hlg"], tmp_path / "hlg_x4.mkv", tiny_checkpoint, "ffv1")
    decoded = subprocess.run(
        [FFMPEG, "-loglevel", "error", "-i", str(output), "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-"],
        capture_output=True,
        check=True,
    ).stdout
    samples = np.frombuffer(decoded, dtype="<u2")
    assert samples.size == FRAMES * 256 * 192 * 3 // 2
    # Not rounded through 8 bits: most samples use the two low bits.
    assert np.mean(samples % 4 != 0) > 0.5
    # and they are the pipeline's own 10-bit frames (FFV1 is lossless).
    spec = job.new_spec(clips["hlg"], tmp_path / "again.mkv", {}, scene_detect=False)
    clip, _ = upscaled_clip(
        open_video(spec, clips["hlg"]),
        scene_detect=False,
        checkpoint=str(tiny_checkpoint),
        max_seq_len=2,
        device="cpu",
        tile=-1,
    )
    assert clip.format.bits_per_sample == 10
    frame = clip.get_frame(0)
    assert np.array_equal(np.asarray(frame[0]).ravel(), samples[: 256 * 192])
