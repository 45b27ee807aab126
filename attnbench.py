"""A plain checkout's ``attnbench``: run from the repository root without installing.

The installed wheel maps ``bench/`` to the package ``attnbench`` (with ``variants/``,
``kernels/`` and ``reports/`` under it; see pyproject's package-dir). A machine without pip,
nox or a network (the GPU machine) runs the checkout instead: ``python3 -m attnbench ...``
from the repository root finds this file, which loads ``bench/__init__.py`` as the real
package and puts it in its place, so every module imports the same ``attnbench.*`` names
either way, spawned worker processes included (they inherit the root on ``sys.path``).
"""

import importlib.util
import sys
from pathlib import Path

if __name__ == "attnbench":  # `import attnbench`: become the package
    _bench = Path(__file__).resolve().parent / "bench"
    _spec = importlib.util.spec_from_file_location(
        "attnbench", _bench / "__init__.py", submodule_search_locations=[str(_bench)])
    _package = importlib.util.module_from_spec(_spec)
    sys.modules["attnbench"] = _package
    _spec.loader.exec_module(_package)
elif __name__ == "__main__":  # `python3 -m attnbench ...`
    from attnbench.cli import main

    sys.exit(main())
