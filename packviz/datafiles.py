"""Where packviz's data lives: the shipped Azure trace, its licence, and the recorded GPU runs.

The data has one home in the repository, the top-level ``data/`` folder. The wheel maps that folder
into the package as ``packviz/data/`` at build time (``pyproject.toml``, ``[tool.setuptools]``), so::

    installed wheel            site-packages/packviz/data/
    source checkout, editable  <checkout>/data/

:func:`find_data_dir` picks the first of the two that exists; :data:`DATA_DIR` and
:data:`RESULTS_DIR` are what the library reads.

>>> (DATA_DIR / "README.md").is_file() and RESULTS_DIR.parent == DATA_DIR
True
"""

from __future__ import annotations

import pathlib

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
"""The ``packviz`` package folder."""


def find_data_dir(package_dir: pathlib.Path = PACKAGE_DIR) -> pathlib.Path:
    """The data folder: the packaged copy inside an installed wheel, else the checkout's top-level ``data/``.

    >>> import tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "packviz").mkdir(); (root / "data").mkdir()
    >>> find_data_dir(root / "packviz") == root / "data"
    True
    >>> (root / "packviz" / "data").mkdir()
    >>> find_data_dir(root / "packviz") == root / "packviz" / "data"
    True
    """
    packaged = package_dir / "data"
    return packaged if packaged.is_dir() else package_dir.parent / "data"


DATA_DIR = find_data_dir()
"""The data folder this installation reads (see :func:`find_data_dir`)."""
RESULTS_DIR = DATA_DIR / "results"
"""Recorded GPU runs, one folder per run: ``results/<date>-<gpu>[-<kind>]/`` (its README lists them)."""
