"""Visual extractors (module name = registry name; ``clip`` holds clip-face and clip-scene): importing
this package registers them."""

from affectcache.extractors.visual import blendshapes, clip, face, grada_face

__all__ = ["blendshapes", "clip", "face", "grada_face"]
