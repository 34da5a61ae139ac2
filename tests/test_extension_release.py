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


# -- the Gradle-free build (scripts/build_extension_jar.sh) against build.gradle -----------------

DEPS = REPO / "qupath_extension" / "java-deps.txt"
STUB_GROUP = "io.github.qupath"  # QuPath itself: the compile-only stand-ins take its place


def _deps() -> tuple[list[dict[str, str]], dict[str, list[tuple[str, str]]], str]:
    """java-deps.txt: its jar lines, its catalog (alias -> [(module, version)]) and QuPath version."""
    jars: list[dict[str, str]] = []
    catalog: dict[str, list[tuple[str, str]]] = {}
    qupath = ""
    for line in DEPS.read_text().splitlines():
        f = line.split()
        if not f or f[0].startswith("#"):
            continue
        if f[0] in {"bundle", "provided", "fx", "test"}:
            assert len(f) == 4, line
            g, a, v = f[1].split(":")[:3]
            jars.append(
                {"role": f[0], "module": f"{g}:{a}", "version": v, "sha256": f[2], "gradle": f[3]}
            )
        elif f[0] == "catalog":
            catalog.setdefault(f[1], []).append((f[2], f[3]))
        elif f[0] == "qupath":
            qupath = f[1]
        else:
            raise AssertionError(f"java-deps.txt: unknown line {line!r}")
    return jars, catalog, qupath


def _gradle_dependencies() -> tuple[set[str], set[str], set[str]]:
    """build.gradle: the coordinates it bundles (implementation), the catalog aliases it compiles
    against (shadow), and those its tests use (testImplementation)."""
    text = (REPO / "build.gradle").read_text()
    variables = dict(re.findall(r"^def (\w+) = '([^']+)'", text, re.M))
    block = re.search(r"^dependencies \{(.*?)^\}", text, re.M | re.S)
    assert block, "build.gradle has no dependencies block"
    implementation: set[str] = set()
    shadow: set[str] = set()
    tests: set[str] = set()
    for conf, arg in re.findall(r"^\s*(\w+)\s+(\S+)", block.group(1), re.M):
        if conf.startswith("//"):
            continue
        arg = re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], arg.strip("'\""))
        if conf == "implementation":
            implementation.add(arg)
        elif conf == "shadow":
            shadow.add(arg)
        elif conf in {"testImplementation", "testRuntimeOnly"}:
            tests.add(arg)
        else:
            raise AssertionError(
                f"build.gradle: a {conf} dependency the Gradle-free build does not know: {arg}"
            )
    return implementation, shadow, tests


def test_gradle_free_build_uses_the_dependencies_and_versions_of_build_gradle() -> None:
    """scripts/build_extension_jar.sh downloads java-deps.txt; build.gradle names the same jars."""
    jars, catalog, qupath = _deps()
    implementation, shadow, tests = _gradle_dependencies()
    # the QuPath version both builds target
    settings = (REPO / "settings.gradle").read_text()
    m = re.search(r"getOrElse\('([^']+)'\)", settings)
    assert m and m.group(1) == qupath, (m and m.group(1), qupath)
    # what is bundled: exactly build.gradle's `implementation` lines, plus what their POMs pull in
    bundled = {f"{j['module']}:{j['version']}": j for j in jars if j["role"] == "bundle"}
    direct = {c for c, j in bundled.items() if not j["gradle"].endswith("-pom")}
    assert direct == implementation, (direct, implementation)
    for c, j in bundled.items():
        if j["gradle"].endswith("-pom"):  # pulled in by the POM of a bundled jar named there
            parent = j["gradle"][: -len("-pom")]
            assert any(p["gradle"] == parent for p in bundled.values()), (c, parent)
    assert any(c.startswith("eu.neilalexander:jnacl:") for c in bundled), (
        "JeroMQ's CURVE needs jnacl"
    )
    # what QuPath provides: every alias build.gradle compiles against is in the catalog copy, and the
    # Gradle-free build uses the catalog's version (QuPath's own modules: the stand-ins)
    for alias in shadow | tests:
        assert alias.startswith("libs."), f"build.gradle: {alias} is not from QuPath's catalog"
        if alias == "libs.junit.platform":  # the launcher, versionless in the catalog
            continue
        assert alias in catalog, (
            f"java-deps.txt has no catalog line for {alias} (build.gradle uses it)"
        )
        modules = catalog[alias]
        if all(mod.startswith(STUB_GROUP + ":") for mod, _ in modules):
            assert (REPO / "qupath_extension" / "src" / "stubs" / "java" / "qupath").is_dir()
            continue
        used = [j for j in jars if j["gradle"] == alias]
        assert used, f"build.gradle uses {alias}, the Gradle-free build has no jar for it"
        for j in used:
            if alias == "libs.junit":  # junit-jupiter 5.X.Y runs on the JUnit platform 1.X.Y
                ((_, v),) = modules
                assert j["version"] == "1" + v[1:], (j, v)
            else:
                assert (j["module"], j["version"]) in modules, (j, modules)
    for j in jars:  # no jar claims an alias build.gradle does not use
        if j["gradle"].startswith("libs."):
            assert j["gradle"] in shadow | tests, j
        assert re.fullmatch(r"[0-9a-f]{64}", j["sha256"]), j
        assert j["role"] == "bundle" or not j["module"].startswith("org.zeromq"), j
    # JavaFX: compiled against, never bundled; QuPath ships its own
    assert {j["module"] for j in jars if j["role"] == "fx"} >= {
        "org.openjfx:javafx-base",
        "org.openjfx:javafx-graphics",
        "org.openjfx:javafx-controls",
    }


def test_gradle_free_build_packs_what_gradle_shadow_packs() -> None:
    """The parts of the jar the build decides statically (the jar itself is checked by
    qupath_extension/src/jarcheck when scripts/java_test.sh builds it)."""
    service = (
        REPO
        / "qupath_extension/src/main/resources/META-INF/services/qupath.lib.gui.extensions.QuPathExtension"
    )
    names = [
        n.strip() for n in service.read_text().splitlines() if n.strip() and not n.startswith("#")
    ]
    assert names == ["qupath.ext.stimage.StimageExtension"]
    assert (
        REPO / "qupath_extension/src/main/java/qupath/ext/stimage/StimageExtension.java"
    ).is_file()
    script = (REPO / "scripts" / "build_extension_jar.sh").read_text()
    # the jar's tree holds the bundled jars, the extension's classes and its resources only
    tree_lines = [
        ln
        for ln in script.splitlines()
        if re.search(r'"\$OUT/jar/?"', ln) and ("cp " in ln or " xf " in ln)
    ]
    assert tree_lines and not any("stubs" in ln for ln in tree_lines), tree_lines
    for attr in (
        "Implementation-Title",
        "Implementation-Version",
        "Automatic-Module-Name",
        "QuPath-Version",
    ):
        assert f"{attr}: $" in script, attr
    check = (
        REPO
        / "qupath_extension/src/jarcheck/java/qupath/ext/stimage/jarcheck/ExtensionJarCheck.java"
    )
    text = check.read_text()
    for must in (
        '"qupath/"',
        '"javafx/"',
        "ServiceLoader.load(QuPathExtension.class",
        "QuPath-Version",
    ):
        assert must in text, must
    java_test = (REPO / "scripts" / "java_test.sh").read_text()
    assert (
        "scripts/build_extension_jar.sh" in java_test
        and "qupath_ui_screenshots.sh --check" in java_test
    )
    assert "apt_install java_test.sh xvfb xauth" in java_test
    ci = (REPO / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci and "STIMAGE_JAVA_REQUIRED=1 bash scripts/java_test.sh" in ci
