"""Layer 2: the run folder, the unit that travels: its file names and readers (layout), staging, lock and manifest
(store), what it records about itself (info), and the shared notebook parameters (config)."""
