"""Layer 0: atomic file writers and where things live (Kaggle, Colab, local); imports nothing else of kagglelib."""
