"""Stage 3, training: presets and the training loop (``trainer``), the zoo of learned tasks (one network per task x
architecture x seed, ``zoo``) and the common probe network of the probe view (``probe_network``)."""
