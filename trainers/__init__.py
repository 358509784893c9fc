"""Trainers over cached arrays (fusion heads, preference learners). Populated by later issues."""
