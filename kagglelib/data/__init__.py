"""Layer 1: battles from files into one frame (load), its columns and the A/B swap (frame), folds, the one text
template (text) and hand-made features."""
