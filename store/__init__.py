"""Feature store (Zarr v3), manifests, and the build runner."""
