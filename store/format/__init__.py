"""The store's on-disk format 2: immutable fragments, the per-modality catalog (commit log + checkpoints),
compaction, and the upgrade of stores written in the per-video layout of format 1."""
