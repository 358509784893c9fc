"""Multi-step pipelines over a store: the offline demo and the LaScA chain."""
