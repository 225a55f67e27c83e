"""Loading weights: MMEditing training checkpoints, BasicSR BasicVSR checkpoints, bare state dicts.

The network's family and sizes are read from the tensor names and shapes, so custom-trained
checkpoints load without a config. Files are always read with `weights_only=True`: a checkpoint
that needs arbitrary unpickling (code execution) is refused.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from ..models import BasicVSRNet, BasicVSRPlusPlusNet, IconVSRNet, RealBasicVSRNet
from ..models import edvr as edvr_sizes
from . import registry


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


# BasicSR's BasicVSR, IconVSR and BasicVSR++ names -> MMEditing's (ours). SPyNet's convolutions
# are a plain Sequential with ReLUs in between in BasicSR (indices 0, 2, 4, 6, 8) and mmcv
# ConvModules in MMEditing; so are most of EDVR's (IconVSR's refill), whose ConvModules are
# the `conv` of ours.
_EDVR_CONV_MODULES = (
    r"pcd_alignment\.(?:offset_conv[123]|feat_conv)\.l\d|pcd_alignment\.cas_offset_conv[12]"
    r"|fusion\.(?:feat_fusion|spatial_attn[1-4]|spatial_attn_l[1-3]|spatial_attn_add1)"
    r"|feat_l[23]_conv[12]"
)
_BASICSR_RENAMES = [
    (re.compile(r"^backward_trunk\."), "backward_resblocks."),
    (re.compile(r"^forward_trunk\."), "forward_resblocks."),
    (re.compile(r"^upconv1\."), "upsample1.upsample_conv."),
    (re.compile(r"^upconv2\."), "upsample2.upsample_conv."),
    (re.compile(r"^edvr\.conv_l([23])_([12])\."), r"edvr.feat_l\1_conv\2."),
    (re.compile(r"^edvr\.pcd_align\."), "edvr.pcd_alignment."),
    (re.compile(rf"^edvr\.({_EDVR_CONV_MODULES})\.(weight|bias)$"), r"edvr.\1.conv.\2"),
]
_BASICSR_SPYNET = re.compile(r"^(spynet\.basic_module\.\d+\.basic_module\.)(\d+)\.(weight|bias)$")


_AGAIN = "download it again (`vsrealbasicvsr download MODEL`) or pass another checkpoint"
# torch's weights-only loader names the global a pickle asks for when it refuses it, in words that
# change between releases ("Unsupported global: GLOBAL print", "unsupported GLOBAL posix.system").
_REFUSED_GLOBAL = re.compile(r"unsupported global\W+(?:global )?(\S+)", re.IGNORECASE)


def _first_sentence(error: BaseException) -> str:
    """The first line of `error` up to its first full stop, or its type when it has no text."""
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return text.split(". ")[0].rstrip(".") or type(error).__name__


def _read(path: Path, mmap: bool = False):
    if not path.exists():
        raise CheckpointError(f"{path}: no such file; check the path, or run `vsrealbasicvsr download MODEL`")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file; pass the path of a .pth checkpoint")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty; {_AGAIN}")
    if _is_text(path):
        raise CheckpointError(f"{path} is a text file, not a torch checkpoint; pass the .pth file of the weights")
    try:
        # mmap reads tensors only when they are used; files in torch's legacy format cannot be mapped
        mmap = mmap and zipfile.is_zipfile(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        refused = _REFUSED_GLOBAL.search(str(error))
        if refused is None:  # not a refused object: no torch file at all
            raise CheckpointError(f"{path} is truncated or not a torch checkpoint; {_AGAIN}") from None
        raise CheckpointError(
            f"{path}: the file wants to run code when loaded (it names {refused[1].rstrip('.')}) and is refused; "
            "a checkpoint holds only tensors: if you trust the file, re-save its state dict with "
            "torch.save(model.state_dict(), path)"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(f"{path} is truncated or damaged ({_first_sentence(error)}); {_AGAIN}") from None


def _is_text(path: Path) -> bool:
    """Whether the file starts as text does (UTF-8 without control characters but whitespace):
    torch files start with a zip header or a pickle's protocol byte, neither of which is text."""
    with path.open("rb") as file:
        head = file.read(512)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # not only a character cut at the 512th byte
            return False
        text = head[: error.start].decode("utf-8")
    return all(character.isprintable() or character in "\t\n\r\f" for character in text)


def _from_basicsr(params: dict) -> dict:
    state = {}
    for key, value in params.items():
        match = _BASICSR_SPYNET.match(key)
        if match:
            key = f"{match[1]}{int(match[2]) // 2}.conv.{match[3]}"
        for pattern, replacement in _BASICSR_RENAMES:
            key = pattern.sub(replacement, key)
        state[key] = value
    return state


def load_state_dict(path, prefer_ema: bool = True, mmap: bool = False) -> dict:
    """The network's state dict (our names) from a checkpoint file.

    Args:
        path: an MMEditing training checkpoint (`{'meta', 'state_dict': {'generator.*',
            'generator_ema.*', ...}}`), a BasicSR checkpoint (`{'params': ...}` or
            `{'params_ema': ...}`), or a bare state dict.
        prefer_ema: use the EMA generator when the file has one (MMEditing tests with it);
            False: the plain generator. Default: True.
        mmap: map the file instead of reading it: for the tensors' shapes without their data
            (`plan.py`). Default: False.
    """
    path = Path(os.fspath(path))
    checkpoint = _read(path, mmap)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(checkpoint).__name__}, expected a dict of tensors)")
    if isinstance(checkpoint.get("state_dict"), dict):  # MMEditing
        state = checkpoint["state_dict"]
        prefixes = ("generator_ema.", "generator.") if prefer_ema else ("generator.",)
        for prefix in prefixes:
            generator = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if generator:
                return generator
        if any(k.startswith(("generator", "discriminator")) for k in state):
            raise CheckpointError(f"{path}: an MMEditing checkpoint without generator weights; use the file with them")
        checkpoint = state
    for key in ("params_ema", "params") if prefer_ema else ("params", "params_ema"):  # BasicSR
        if isinstance(checkpoint.get(key), dict):
            return _from_basicsr(checkpoint[key])
    if not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(f"{path}: not a checkpoint of tensors (keys: {', '.join(list(checkpoint)[:5])})")
    return checkpoint


def _count_blocks(state: dict, prefix: str, path) -> int:
    """The number of residual blocks under `prefix`: block numbers must run 0, 1, ... with none
    missing, so a name alone (e.g. block 3999) cannot make the network larger than the file."""
    pattern = re.compile(re.escape(prefix) + r"main\.2\.(\d+)\.")
    indices = {int(m[1]) for k in state if (m := pattern.match(k))}
    if indices and len(indices) != max(indices) + 1:
        raise CheckpointError(
            f"{path}: the blocks of {prefix.rstrip('.')} are numbered up to {max(indices)}, but the file "
            f"holds {len(indices)} of them; the file is damaged or not a checkpoint of ours: {_AGAIN}"
        )
    return len(indices)


def infer_config(state: dict, path) -> tuple[type, dict]:
    """The network class and constructor arguments that fit `state`'s names and shapes."""
    if "basicvsr.fusion.weight" in state:
        return RealBasicVSRNet, {
            "mid_channels": state["basicvsr.fusion.weight"].shape[0],
            "num_propagation_blocks": _count_blocks(state, "basicvsr.backward_resblocks.", path),
            "num_cleaning_blocks": _count_blocks(state, "image_cleaning.0.", path),
        }
    if "edvr.conv_first.weight" in state and "backward_resblocks.main.0.weight" in state:
        fused = state.get("edvr.fusion.feat_fusion.conv.weight")
        frames = fused.shape[1] // edvr_sizes.CHANNELS if fused is not None and fused.dim() == 4 else 5
        return IconVSRNet, {
            "mid_channels": state["backward_resblocks.main.0.weight"].shape[0],
            "num_blocks": _count_blocks(state, "backward_resblocks.", path),
            "padding": (frames - 1) // 2,  # EDVR sees the keyframe and `padding` frames each side
        }
    if "deform_align.backward_1.weight" in state and "reconstruction.main.0.weight" in state:
        return BasicVSRPlusPlusNet, {
            "mid_channels": state["reconstruction.main.0.weight"].shape[0],
            "num_blocks": _count_blocks(state, "backbone.backward_1.", path),
            # x1 variants extract features after two strided convolutions (feat_extract.0, .2)
            "is_low_res_input": "feat_extract.main.0.weight" in state,
        }
    if "fusion.weight" in state:
        return BasicVSRNet, {
            "mid_channels": state["fusion.weight"].shape[0],
            "num_blocks": _count_blocks(state, "backward_resblocks.", path),
        }
    sample = ", ".join(list(state)[:5])
    raise CheckpointError(
        f"{path}: not a checkpoint of the BasicVSR family (RealBasicVSR, BasicVSR, IconVSR, BasicVSR++; "
        f"first keys: {sample}); pass a checkpoint of one of them"
    )


def _check_fits(skeleton: torch.nn.Module, state: dict, path) -> None:
    """Every name and shape of `state` is `skeleton`'s (a network on the meta device: sizes without
    memory), so the real network is built only when the file's own tensors fill it."""
    expected = skeleton.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: does not fit {type(skeleton).__name__} (another architecture?): "
            f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}; "
            "pass a checkpoint of this model"
        )
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise CheckpointError(
                f"{path}: shape mismatch for {key}: the file has {tuple(state[key].shape)}, the network "
                f"{tuple(tensor.shape)}; the file is damaged or of a differently sized network"
            )


def load_model(name_or_path, prefer_ema: bool = True, **overrides) -> torch.nn.Module:
    """A network with its weights, in eval mode on the CPU.

    Args:
        name_or_path: a registry name (e.g. "realbasicvsr") or a checkpoint file.
        prefer_ema: see `load_state_dict`.
        **overrides: constructor arguments that the weights do not determine, e.g.
            `dynamic_refine_thres` of RealBasicVSRNet.
    """
    text = os.fspath(name_or_path)
    if text in registry.MODELS:
        path = registry.resolve(text)
        if path is None:
            raise CheckpointError(registry.not_installed_message(text))
    else:
        path = Path(text)
    state = load_state_dict(path, prefer_ema)
    network_class, config = infer_config(state, path)
    try:
        with torch.device("meta"):
            skeleton = network_class(**(config | overrides))
    except TypeError as error:
        raise CheckpointError(f"{path}: bad override for {network_class.__name__}: {error}") from None
    _check_fits(skeleton, state, path)
    network = network_class(**(config | overrides))
    network.load_state_dict(state, strict=True)
    return network.eval()
