"""The Dockerfile: hadolint, what the image must be, and its build stage reproduced without an engine.

The image itself is built with buildah and each component run in it by tests/image/. What is checked here,
in a second, is: hadolint's rules; the final stage's base, user, entrypoint and absence of compilers and
caches, read from the Dockerfile; and the build stage's work, which is ``pip wheel`` of exactly the files
the build context lets in (.dockerignore), done here for real.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.deploy.manifests import ROOT

DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


def hadolint(path: Path) -> list[dict[str, object]]:
    result = subprocess.run(
        [HADOLINT, "--format", "json", "--failure-threshold", "style", "--disable-ignore-pragma", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings: list[dict[str, object]] = json.loads(result.stdout or "[]")
    assert (result.returncode == 0) == (findings == []), result.stderr
    return findings


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split into build stages."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    instructions = [
        line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    found: list[list[str]] = []
    for line in instructions:
        if line.upper().startswith("FROM "):
            found.append([])
        if found:
            found[-1].append(line)
    return found


def test_hadolint_finds_nothing() -> None:
    assert hadolint(DOCKERFILE) == []


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nRUN pip install x\n")
    codes = {finding["code"] for finding in hadolint(bad)}
    assert {"DL3007", "DL3008", "DL3013"} <= codes  # :latest, unpinned apt and pip, among others


def test_final_stage_is_slim_non_root_with_the_cli_as_entrypoint() -> None:
    *builders, final = stages()
    assert builders, "a build stage keeps build tools out of the final image"
    arguments = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.M))
    base = final[0].split()[1]
    base = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], base)
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", base), base
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users == ["1001:1001"]  # the manifests' runAsUser/runAsGroup
    entrypoint = [line for line in final if line.startswith("ENTRYPOINT ")]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert len(entrypoint) == 1 and json.loads(entrypoint[0].removeprefix("ENTRYPOINT ")) == list(scripts)


def test_no_compiler_and_no_cache_in_the_final_image() -> None:
    final = stages()[-1]
    text = " ".join(final)
    for tool in ("gcc", "g++", "clang", "build-essential", "make ", "cargo", "rustc", "apt-get install"):
        assert tool not in text, f"{tool} in the final stage"
    assert "PIP_NO_CACHE_DIR=1" in text
    assert not any(line.startswith(("COPY", "ADD")) for line in final), "the final stage copies nothing in"
    assert "--mount=type=bind,from=build" in text  # the wheels come from the build stage, not a layer


def test_the_build_stage_works_on_the_files_the_context_lets_in(tmp_path: Path) -> None:
    """``pip wheel`` as the build stage runs it, on pyproject.toml, README.md and src/ only."""
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    assert "*" in ignore and sorted(allowed) == ["README.md", "pyproject.toml", "src"]
    build = stages()[0]
    copied = [part for line in build if line.startswith("COPY") for part in line.split()[1:-1]]
    assert sorted(copied) == sorted(allowed)
    context = tmp_path / "context"
    context.mkdir()
    for name in allowed:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy(source, context / name)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            ".",
        ],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    [wheel] = (tmp_path / "wheels").glob("stats_log_collector-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "stats_log_collector/memstat/static/dashboard.html" in names
    assert "stats_log_collector/memstat/static/vendor/uPlot.iife.min.js" in names
    [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "stats-log-collector = stats_log_collector.cli:main" in text
    # The KubeVirt test cluster is a distribution of its own (testcluster/), never in the runtime wheel.
    stray = [n for n in names if n.startswith(("kubevirt_test_cluster/", "stats_log_collector/testing/"))]
    assert stray == []
