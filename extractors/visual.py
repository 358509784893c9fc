"""The visual extractors (issue 5), imported together so one import line registers them all:
``face`` (:mod:`~affectcache.extractors.face_detection`), ``clip-face`` and ``clip-scene``
(:mod:`~affectcache.extractors.clip_visual`), ``grada-face`` (:mod:`~affectcache.extractors.grada`)."""

from __future__ import annotations

from affectcache.extractors import clip_visual as _clip_visual  # noqa: F401  (registers clip-face, clip-scene)
from affectcache.extractors import face_detection as _face_detection  # noqa: F401  (registers face)
from affectcache.extractors import grada as _grada  # noqa: F401  (registers grada-face)
