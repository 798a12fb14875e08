"""The light core's guard: a module that needs torch calls :func:`require_model_extra` before it
imports torch (the widgets: :func:`require_extra` with :data:`LAB_EXTRA`), and without it the import
fails with one line naming the extra that installs it, not a bare ``No module named 'torch'``.

``pip install packviz`` is numpy, matplotlib and tqdm; ``pip install 'packviz[model]'`` adds torch and
transformers. The error stays a :class:`ModuleNotFoundError` whose ``name`` is the missing package, so
``python -m packviz`` (which checks ``name``) and ``except ImportError`` in user code both still work.
"""

from __future__ import annotations

import importlib.util

MODEL_EXTRA = ("torch", "transformers")
"""What ``pip install 'packviz[model]'`` adds to the light core."""


def missing_model_packages(packages=MODEL_EXTRA) -> list[str]:
    """The packages of ``packages`` that are not installed (found without importing them)."""
    return [p for p in packages if importlib.util.find_spec(p) is None]


def require_model_extra(feature: str, packages=("torch",)) -> None:
    """Raise one clear :class:`ModuleNotFoundError` if ``feature`` cannot run for want of the model extra."""
    require_extra(feature, packages, "model")


LAB_EXTRA = ("ipywidgets",)
"""What ``pip install 'packviz[lab]'`` adds for the widgets (with JupyterLab)."""


def require_extra(feature: str, packages, extra: str) -> None:
    """Raise one clear :class:`ModuleNotFoundError` naming ``pip install 'packviz[<extra>]'`` if a package of
    ``packages`` that ``feature`` needs is not installed (``name``: the first missing one).

    >>> require_extra("packviz.widgets", ("surely_not_a_package_xyz",), "lab")
    Traceback (most recent call last):
    ...
    ModuleNotFoundError: packviz.widgets needs surely_not_a_package_xyz, which is not installed: pip install 'packviz[lab]' (or make install, which installs everything)
    """
    missing = missing_model_packages(packages)
    if missing:
        raise ModuleNotFoundError(f"{feature} needs {missing[0]}, which is not installed: pip install 'packviz[{extra}]' "
                                  "(or make install, which installs everything)", name=missing[0])

