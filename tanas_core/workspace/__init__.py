"""Where results live and where work runs: the SQLite + safetensors store (``store``), its typed records
(``records``), the run context every operation receives (``context``: workspace, device, backend, progress, cancel)
and the fan-out backends (``backends``: local processes or Ray)."""
