"""The LaScA extractors (``lasca-windows``, ``lasca-text``, ``lasca-embedding``), their lexicons and
Otsu's threshold: importing this package registers the extractors."""

from affectcache.extractors.lasca import embedding, text, windows

__all__ = ["embedding", "text", "windows"]
