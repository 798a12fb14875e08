"""Suite-wide pytest hooks.

Notebook cells tagged ``gpu`` (cell metadata tags) need CUDA: under nbval they are skipped
when no GPU is present, so the same notebooks pass on a laptop and on a GPU box.
"""

import functools

import pytest


@functools.lru_cache(maxsize=1)
def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None:
            continue
        if "gpu" in cell.get("metadata", {}).get("tags", []) and not _has_cuda():
            item.add_marker(pytest.mark.skip(reason="GPU-only cell and no CUDA device here"))
