"""Trainers over cached arrays: the VA heads and fusion models (registry in ``models``), the multitask
MCDM trainer (``mcdm``), the LaScA preference learner; data views, metrics, the training loop, run
folders and predictions written back into the store."""
