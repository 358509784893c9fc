"""The ``kookmin-windows`` task: CLIP face embeddings and AST windows on the frame clock, plus the prompts.

The ``fusion-windows`` task (:class:`~affectcache.trainers.fusion.tasks.FusionWindowTask`) with two
streams read straight from the feature store: the visual stream is ``clip-face`` (one row per face frame,
put on the clock by the nearest-valid rule; with the face policy ``all`` its rows hold one embedding per
face slot and ``face_slot`` picks one), the audio stream is ``ast`` (4 s windows every 2 s, each frame
takes the window covering it). Frames without their own row take the nearest valid one when
``fill_missing`` is on (within ``max_fill_s``), else they are zeros and masked for that stream.

Before training, :meth:`KookminTask.init_model` encodes the region prompts once with the text tower of
the CLIP model named in the visual modality's provenance
(:func:`~affectcache.trainers.models.kookmin.encode_region_prompts`) and writes them into the model's
prompt buffer, so checkpoints carry them and prediction never needs the text tower again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.store.errors import StoreError
from affectcache.trainers.data.inputs import InputModality, load_input
from affectcache.trainers.fusion.tasks import FusionWindowTask
from affectcache.trainers.va_tasks import TASKS

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch

    from affectcache.store.zarr_store import FeatureStore
    from affectcache.trainers.data.clock import FrameClock
    from affectcache.trainers.models.kookmin import KookminConfig

logger = logging.getLogger(__name__)


class KookminTask(FusionWindowTask):
    """``kookmin-windows``: ``clip-face`` + ``ast`` frame windows for the ``kookmin`` model."""

    view = "kookmin-windows"
    config: KookminConfig

    def __init__(self, config: KookminConfig, fs: FeatureStore, clocks: Mapping[str, FrameClock]) -> None:
        super().__init__(config, fs, clocks)
        # The image modality's identity decides the prompt encoder (read now, while the store is at hand).
        self.image_provenance: dict[str, Any] = dict(fs.provenance(config.input_names()[0]))

    def _load_stream(self, fs: FeatureStore, stream: str, modality: str, video_ids: list[str],
                     ) -> InputModality:
        source = load_input(fs, modality, video_ids, None)
        if stream != self.config.visual_modality or source.packed.values.ndim != 3:
            return source
        # Face policy "all": (rows, slots, dim); one slot is the visual stream, rows without it invalid.
        packed = source.packed
        slots, dim = int(packed.values.shape[1]), int(packed.values.shape[2])
        slot = self.config.face_slot
        if slot >= slots:
            raise StoreError(f"{modality} holds {slots} face slots per row; set face_slot below {slots}, "
                             f"got {slot}")
        present = np.abs(packed.values[:, slot, :]).max(axis=1) > 0
        packed = dataclasses.replace(packed, mask=packed.mask & present)
        return InputModality(packed=packed, columns=(slot * dim, (slot + 1) * dim))

    def init_model(self, model: torch.nn.Module) -> dict[str, Any]:
        """Encode the region prompts with the image model's own text tower into ``model``'s prompt bank;
        returns the run.json record of the encoder and the prompts."""
        import torch

        from affectcache.trainers.models.kookmin import (
            KookminModel,
            encode_region_prompts,
            prompt_encoder_model,
        )

        if not isinstance(model, KookminModel):
            raise TypeError(f"the kookmin task initialises a KookminModel, got {type(model).__name__}")
        cfg = self.config
        try:
            encoder, revision = prompt_encoder_model(self.image_provenance)
            # The built model's config: it carries the store's image width (what a None text_dim follows).
            vectors = encode_region_prompts(model.config, self.image_provenance, device=cfg.device)
        except (OSError, ValueError) as exc:
            raise StoreError(f"kookmin: cannot encode the region prompts with the text tower of "
                             f"{cfg.input_names()[0]}'s CLIP model: {exc}") from exc
        with torch.no_grad():
            model.prompt_embeddings.copy_(torch.nn.functional.normalize(vectors.float(), dim=-1))
        digest = hashlib.sha256(np.ascontiguousarray(vectors.numpy(), dtype=np.float32).tobytes()).hexdigest()
        logger.info("kookmin: %d region prompts encoded by the text tower of %s", len(cfg.prompts), encoder)
        return {"prompts": {"encoder": {"model": encoder, "revision": revision,
                                        "image_modality": cfg.input_names()[0],
                                        "identity": self.image_provenance.get("model")},
                            "texts": list(cfg.prompts), "embeddings_sha256": digest}}


TASKS[KookminTask.view] = KookminTask
