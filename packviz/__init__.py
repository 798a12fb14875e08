"""packviz: see, count and measure the compute that padding wastes, and win it back by packing."""

__version__ = "0.1.0"
