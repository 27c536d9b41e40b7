"""A pytest plugin (``-p tests.no_torch``): torch, diffusers and transformers cannot be imported.

``make test`` runs the API tier with it, which proves the ingress, the Store, the Planner
and the fake role need none of them.
"""

from __future__ import annotations

import importlib.abc
import sys

BLOCKED = frozenset({"torch", "diffusers", "transformers"})


class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} was imported in a run that must not need it (tests/no_torch.py)")
        return None


def pytest_configure() -> None:
    loaded = sorted(name for name in BLOCKED if name in sys.modules)
    if loaded:
        raise RuntimeError(f"already imported before the plugin loaded: {loaded}")
    sys.meta_path.insert(0, _Refuse())
