"""The extractor contract and what every part of affectcache shares: configs, the generic registry,
records, errors, provenance and hashing, atomic file writes."""
