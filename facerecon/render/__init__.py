"""The project's CPU renderer: a z-buffer rasteriser and what is built on it."""
