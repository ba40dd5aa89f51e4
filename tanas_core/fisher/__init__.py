"""Stage 4, Fisher information: per-sample gradients (``per_sample``), diagonal Fishers and factors, equations 1-4
(``matrices``), and ``F[b, t]``, a baseline network's Fisher on a target's data, cached (``target``)."""
