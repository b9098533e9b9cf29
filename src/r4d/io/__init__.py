"""File formats and safe writes: atomic files, PyAV video, masks and sample schemas."""
