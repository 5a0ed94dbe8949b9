"""Layer 5: training (notebooks 02-04): configs, inputs, the Trainer loop, one fold or every fold, the baseline.

``torchrun --nproc_per_node 2 -m kagglelib.training --config cfg.json`` runs :func:`kagglelib.training.fit.main`.
"""
