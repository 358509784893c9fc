"""Audio extractors (module name = registry name): importing this package registers them."""

from affectcache.extractors.audio import ast, clap_audio, mfcc, wav2vec2_emotion, wavlm, wavlm_frames

__all__ = ["ast", "clap_audio", "mfcc", "wav2vec2_emotion", "wavlm", "wavlm_frames"]
