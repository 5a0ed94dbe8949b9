"""Layer 6: what notebooks 01 and 06 show: EDA, bias probes, the ablation table (and its training grid)."""
