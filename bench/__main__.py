"""``python -m attnbench`` (installed) or ``python3 -m bench`` (a plain checkout: the GPU
machine has no pip or nox; importing ``bench`` registered it as ``attnbench``)."""

import sys

from attnbench.cli import main

sys.exit(main())
