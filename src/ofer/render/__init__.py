"""Rendering: cameras, rasterisers and shaders."""
