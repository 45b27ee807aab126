"""``python3 -m bench`` is ``attnbench`` without installing (the GPU machine has no pip/nox)."""

import sys

from bench.cli import main

sys.exit(main())
