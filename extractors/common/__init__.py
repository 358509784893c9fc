"""Building blocks several extractors share: pretrained weights and pinned assets, MediaPipe tasks,
image/audio model plumbing (CLIP preprocessing, EfficientNet trunk, windows, embeddings, face crops)."""
