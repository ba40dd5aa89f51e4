"""Stage 5, task distances: the metrics between two Fishers (``metrics``, equations 5, 7, 8 and extensions), the
``d[b, t]`` matrices of a suite with their reference (``matrices``), and the validation report (``validation``)."""
