"""``python -m kagglelib.training --config cfg.json`` (also under ``torchrun`` / ``accelerate launch``)."""
from kagglelib.training.fit import main

raise SystemExit(main())
