"""The light core's guard: a module that needs torch calls :func:`require_model_extra` before it
imports torch, and without torch the import fails with one line naming the extra that installs
it, not a bare ``No module named 'torch'``.

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
    missing = missing_model_packages(packages)
    if missing:
        raise ModuleNotFoundError(f"{feature} needs {missing[0]}, which is not installed: pip install 'packviz[model]' "
                                  "(or make install, which installs everything)", name=missing[0])

