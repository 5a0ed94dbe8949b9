"""Layer 4: models: the spec, devices, building and heads, saved models, the forward pass, shapes, the feature
models' numbers."""
