"""Layer 3: scoring predictions: metrics, temperature calibration, blends and rules, submission files, figures."""
