"""The QuPath extension's catalog and release workflow: what QuPath's extension manager reads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "qupath_extension" / "catalog" / "catalog.json"
WORKFLOW = REPO / ".github" / "workflows" / "release-extension.yml"
VERSION = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+(-rc[0-9]+)?$")  # the catalog model's rule


def _github(url: str) -> tuple[str, str]:
    u = urlparse(url)
    assert u.scheme == "https" and u.netloc == "github.com", url
    owner, repo = u.path.strip("/").split("/")[:2]
    return owner, repo


def test_catalog_follows_the_extension_catalog_model() -> None:
    """Fields and rules of qupath/extension-catalog-model (Catalog, Extension, Release, VersionRange)."""
    cat = json.loads(CATALOG.read_text())
    assert set(cat) == {"name", "description", "extensions"}
    names = [e["name"] for e in cat["extensions"]]
    assert len(names) == len(set(names)) and names
    pyproject = (REPO / "pyproject.toml").read_text()
    homepage = re.search(r'Homepage = "([^"]+)"', pyproject).group(1)  # type: ignore[union-attr]
    for ext in cat["extensions"]:
        assert {"name", "description", "author", "homepage", "releases"} <= set(ext)
        assert ext["homepage"] == homepage  # one project, one address
        owner, repo = _github(ext["homepage"])
        for rel in ext["releases"]:
            assert VERSION.match(rel["name"]), rel["name"]
            assert _github(rel["main_url"]) == (owner, repo)
            # the jar the release workflow attaches: qupath-extension-stimage-<version>-all.jar
            assert rel["main_url"].endswith(
                f"/releases/download/{rel['name']}/qupath-extension-stimage-{rel['name'][1:]}-all.jar"
            )
            rng = rel["version_range"]
            assert VERSION.match(rng["min"])
            # the default build targets QuPath 0.7 (Java 25 class files): not loadable in 0.6
            assert rng["min"] >= "v0.7.0"


def test_release_workflow_builds_the_jar_the_catalog_names() -> None:
    yaml = pytest.importorskip("yaml")
    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key 'on' as True
    assert on["push"]["tags"] == ["v*"]
    steps = [s.get("run", "") for s in wf["jobs"]["jar"]["steps"]]
    assert any("shadowJar" in r and "stimage.version" in r for r in steps)
    assert any("gh release create" in r and "-all.jar" in r for r in steps)
    gradle = (REPO / "build.gradle").read_text()
    assert "findProperty('stimage.version')" in gradle
    assert "name.set('qupath-extension-stimage')" in gradle
