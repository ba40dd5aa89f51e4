"""``python -m tanas_core``: see ``tanas_core/cli/``."""
import sys

from tanas_core.cli import main

sys.exit(main())
