"""Shared building blocks: heatmap codec, layers, losses, metrics, backbones, data I/O, plots."""
