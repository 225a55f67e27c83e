"""Builds the native VapourSynth filter next to the Python package.

The extension's dotted name puts the shared library in the vapoursynth package's `plugins/`
folder, from which VapourSynth autoloads it: a `.vpy` can call `core.rbvsr.Upscale` without
importing vsrealbasicvsr. Metadata lives in pyproject.toml.
"""

import importlib.util
from pathlib import Path

from setuptools import Extension, setup


def vapoursynth_include_dir() -> str:
    """The VapourSynth headers that the vapoursynth wheel (a build requirement) ships."""
    spec = importlib.util.find_spec("vapoursynth")
    if spec is None or spec.origin is None:
        raise SystemExit("vsrealbasicvsr: building the filter needs the vapoursynth package (pip install vapoursynth)")
    include = Path(spec.origin).parent / "include"
    if not (include / "VapourSynth4.h").is_file():
        raise SystemExit(f"vsrealbasicvsr: VapourSynth4.h not found in {include}; install vapoursynth >= 70")
    return str(include)


setup(
    ext_modules=[
        Extension(
            "vapoursynth.plugins.rbvsr",
            sources=["vsrealbasicvsr/plugin/rbvsr.c"],
            include_dirs=[vapoursynth_include_dir()],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ],
)
