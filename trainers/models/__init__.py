"""Trainable models over cached arrays (plain PyTorch ``nn.Module`` s with frozen config dataclasses)."""
