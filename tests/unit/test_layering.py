"""The layers import each other one way: serve_app on top, then deployments and storage.

The vocabulary every layer shares (errors, the errors-as-values wrapper, request schemas and value types,
data-URI decoding) lives in leaf modules of ``serve_app`` that import nothing else of the
project; ``storage`` and ``deployments`` may import only those from ``serve_app``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("serve_app", "deployments", "storage")
LEAVES = frozenset(
    {
        "serve_app.errors",
        "serve_app.remote",
        "serve_app.schemas",
        "serve_app.field_types",
        "serve_app.upscale_schemas",
        "serve_app.node_schemas",
        "serve_app.datauri",
        "serve_app.metrics",
        "serve_app.acceleration_schemas",
    }  # fmt: skip
)


def project_imports() -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in the file, lazily too)."""
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            imported: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                imported |= {name for name in names if name.split(".")[0] in PACKAGES and _is_module(name)}
            graph[module] = imported - {module}
    return graph


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, imported in sorted(graph.items()):
        layer = module.split(".")[0]
        for name in sorted(imported):
            target = name.split(".")[0]
            if module in LEAVES and name not in LEAVES:
                found.append(f"leaf {module} imports {name}")
            elif layer in ("storage", "deployments") and target == "serve_app" and name not in LEAVES:
                found.append(f"{module} ({layer}) imports {name}, which is not a shared leaf module")
            elif layer == "storage" and target == "deployments":
                found.append(f"{module} (storage) imports {name} (deployments)")
    return found


def test_the_layers_import_one_way() -> None:
    assert violations(project_imports()) == []


def test_the_check_catches_a_lower_layer_importing_the_ingress() -> None:
    assert violations({"storage.store": {"serve_app.routes.users"}})
    assert violations({"deployments.planner": {"serve_app.ingress"}})
    assert violations({"serve_app.schemas": {"deployments.plan"}})
    assert violations({"storage.store": {"serve_app.errors"}, "deployments.plan": {"serve_app.datauri"}}) == []


def test_ingress_modules_do_not_import_torch() -> None:
    code = (
        "import sys, serve_app.ingress, serve_app.routes.invocations, storage.store, deployments.plan, "
        "deployments.planner; "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
