"""The README's two commands and the route table of docs/API.md stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.routing import APIRoute

ROOT = Path(__file__).resolve().parents[2]
ROUTE_ROW = re.compile(r"^\| `([A-Z]+) (/\S*)` \|", re.MULTILINE)


def app_routes() -> set[tuple[str, str]]:
    from serve_app.config import AppArgs
    from serve_app.dependencies import Services
    from serve_app.ingress import create_api
    from serve_app.openapi import all_routes

    api = create_api(Services(store=None, planner=None, args=AppArgs(data_dir=Path("/nonexistent")), version="docs"))
    return {
        (method, route.path)
        for route in all_routes(api.routes)
        if isinstance(route, APIRoute)
        for method in route.methods - {"HEAD", "OPTIONS"}
    }


def test_the_readme_opens_with_the_two_commands_that_the_makefile_and_ci_run() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 80
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.splitlines()] == ["make serve", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^serve: ", makefile, re.MULTILINE) and re.search(r"^test: ", makefile, re.MULTILINE)
    assert "enfugue-serve run" in makefile
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)
    assert "45554" in readme and str(__import__("serve_app.cli").cli.DEFAULT_PORT) == "45554"


def test_every_document_the_readme_links_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)(?:#[\w-]+)?\)", readme)
    assert links
    for link in links:
        assert (ROOT / link).is_file(), link


def test_the_route_table_of_the_api_document_is_the_apps() -> None:
    documented = ROUTE_ROW.findall((ROOT / "docs" / "API.md").read_text())
    assert len(documented) == len(set(documented)), "a route is listed twice"
    routes = app_routes()
    assert set(documented) - routes == set(), "documented, but the app has no such route"
    assert routes - set(documented) == set(), "the app has these routes, docs/API.md does not list them"
