"""Stage 1, data: real datasets (``datasets``, ``files``), tasks as ordered class groups of one dataset (``tasks``),
the suites of tasks (``suites``), and the held-out probe images a Fisher is computed on (``probe_images``)."""
