"""The ingress never imports torch or diffusers (its replicas stay small and start fast)."""

from __future__ import annotations

import subprocess
import sys


def test_ingress_modules_do_not_import_torch() -> None:
    code = (
        "import sys, serve_app.ingress, serve_app.routes.invocations, storage.store, deployments.plan, "
        "deployments.planner; "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
