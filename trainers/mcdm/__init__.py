"""SCD-MMPSR's multitask psychological-state trainer: the MCDM model, its losses and its clip-level data.

Modules: ``model`` (MCDM and its config), ``graph`` (dense graph layers), ``losses`` (supervised and
pseudo-label components), ``gradnorm`` (dual-branch GradNorm), ``data`` (mean‖std clip vectors from the
store, concatenated corpora), ``labels`` (task labels from corpus manifests, MELD zero-shot mapping).
"""
