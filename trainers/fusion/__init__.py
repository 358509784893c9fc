"""Fusion over prediction modalities: the fusion trainers' config and task, late fusion, contribution maps."""
