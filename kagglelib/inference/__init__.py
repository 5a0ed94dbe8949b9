"""Layer 5, beside training and never importing it: saved runs as predictors, swap TTA in resumable chunks,
notebook 05's blend and submission, pseudo-labels."""
