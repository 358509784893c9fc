"""Language extractors (module name = registry name): importing this package registers them."""

from affectcache.extractors.language import (
    behaviour_caption,
    behaviour_hidden,
    text_embedding,
    transcript_whisper,
)

__all__ = ["behaviour_caption", "behaviour_hidden", "text_embedding", "transcript_whisper"]
