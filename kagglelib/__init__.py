"""kagglelib: shared code for the arena human-preference notebooks (data, text, features, models,
training, inference/TTA, metrics, plots, paths). Modules are imported explicitly, e.g.
``from kagglelib import data``; inference imports nothing from training."""

__version__ = "0.1.0"
