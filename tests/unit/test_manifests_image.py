"""The image the manifests run: the Containerfile installs the locked dependencies and labels what it
builds, the build context holds only what it copies, `make image-digest` pins the base, and an
overlay's `images:` entry really replaces the image (rendered with the real kubectl)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.unit.test_manifests_render import MANIFESTS, OVERLAYS, ROOT, Doc, container, find

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
KUBECTL = shutil.which("kubectl")


def instructions() -> list[tuple[str, str]]:
    """The Containerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    lines = [line for line in (ROOT / "Containerfile").read_text().splitlines()
             if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(m[1].upper(), m[2].strip()) for m in re.finditer(r"^(\w+)\s+(.*)$", joined, re.MULTILINE)]


def copied_sources() -> list[str]:
    """What the Containerfile copies from the build context (not `--from` another stage)."""
    out = []
    for op, args in instructions():
        if op == "COPY" and "--from=" not in args:
            out += [a for a in args.split()[:-1] if not a.startswith("--")]
    return out


# --- the build context --------------------------------------------------------------------------

def _pattern(text: str) -> re.Pattern[str]:
    """A .containerignore pattern as Docker reads it (Go filepath.Match plus `**`)."""
    text = os.path.normpath(text.strip()).lstrip("/")
    out, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        elif text[i] == "[":
            end = text.index("]", i)
            out, i = out + text[i:end + 1], end + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(out)


def in_context(path: str) -> bool:
    """Whether the builder sees `path`: the last pattern matching it or one of its parents decides."""
    rules = [line.strip() for line in (ROOT / ".containerignore").read_text().splitlines()]
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    for rule in (r for r in rules if r and not r.startswith("#")):
        keep = rule.startswith("!")
        pattern = _pattern(rule.removeprefix("!"))
        if any(pattern.fullmatch(p) for p in prefixes):
            excluded = not keep
    return not excluded


LEFT_IN_A_WORK_TREE = [
    ".venv/bin/python", ".git/HEAD", "reports/chaos/index.html", ".mypy_cache/3.11/x.json",
    ".ruff_cache/0.4/x", ".pytest_cache/v/cache", ".hypothesis/examples/x",
    "guard/__pycache__/app.cpython-311.pyc", "guard/admission/__pycache__/gcra.cpython-311.pyc",
    "guard.egg-info/PKG-INFO", "certs/ca.key", "alice.kubeconfig", "guard.yaml", "run"]


def test_the_build_context_is_exactly_what_the_containerfile_copies() -> None:
    """The builder sees the copied files and guard/'s sources; no venv, .git, tests, caches or keys."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    candidates = sorted(set(tracked) | set(LEFT_IN_A_WORK_TREE))
    sources = copied_sources()
    assert {"requirements.lock", "guard"} <= set(sources)
    wanted = {p for p in candidates
              if any(p == s or p.startswith(s.rstrip("/") + "/") for s in sources)
              and "__pycache__" not in p}
    assert {p for p in candidates if in_context(p)} == wanted
    assert not any(in_context(p) for p in LEFT_IN_A_WORK_TREE)
    assert not in_context("tests/unit/test_manifests_image.py") and not in_context("chaos/__main__.py")


def test_the_ignore_matcher_can_refuse_and_readmit() -> None:
    """The matcher is Docker's: a later `!` re-admits, `**/` spans directories, parents decide."""
    assert _pattern("guard/**/__pycache__").fullmatch("guard/__pycache__")
    assert _pattern("guard/**/__pycache__").fullmatch("guard/a/b/__pycache__")
    assert not _pattern("*").fullmatch("guard/app.py") and _pattern("*").fullmatch("guard")
    assert in_context("guard/app.py") and not in_context("chaos/sim/app.py")


def test_dockerignore_is_the_containerignore() -> None:
    """docker reads .dockerignore, podman .containerignore: one file, so they cannot drift apart."""
    link = ROOT / ".dockerignore"
    assert link.is_symlink() and link.resolve() == (ROOT / ".containerignore").resolve()


# --- pinned dependencies ------------------------------------------------------------------------

def locked(name: str) -> dict[str, str]:
    """A pip-compile lock as {canonical name: version}; every pin carries at least one hash."""
    text = (ROOT / name).read_text()
    assert "#    make lock\n" in text, f"{name}: regenerate it with `make lock`"
    pins: dict[str, str] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if m:
            assert "--hash=sha256:" in block, f"{name}: {m[1]} has no hash"
            pins[canonicalize_name(m[1])] = m[2]
    return pins


@pytest.mark.parametrize(("lock", "requirements"), [
    ("requirements.lock", PYPROJECT["project"]["dependencies"]),
    ("requirements-build.lock", PYPROJECT["build-system"]["requires"]),
])
def test_the_locks_pin_every_declared_dependency_within_its_range(lock: str, requirements: list[str]) -> None:
    """Each dependency pyproject.toml declares is pinned, at a version its specifier allows."""
    pins = locked(lock)
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"sys_platform": "linux"}):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock} lacks {req.name}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), f"{lock}: {name}=={pins[name]} vs {req}"


def test_the_runtime_lock_holds_no_development_tool() -> None:
    """Test and lint tools stay out of the image."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    dev = {canonicalize_name(Requirement(r).name) for r in extras["dev"]}
    assert dev & locked("requirements.lock").keys() == set()
    assert len(locked("requirements.lock")) > len(PYPROJECT["project"]["dependencies"])  # transitive too


def test_the_containerfile_installs_the_lock_by_hash_and_guard_without_dependencies() -> None:
    """Dependencies come only from requirements.lock, by hash, as wheels; guard adds none."""
    runs = [args for op, args in instructions() if op == "RUN"]
    (install,) = [r for r in runs if "-r /src/requirements.lock" in r]
    assert "--require-hashes" in install and "--only-binary=:all:" in install
    (build,) = [r for r in runs if "-r /src/requirements-build.lock" in r]
    assert "--require-hashes" in build and "--no-build-isolation" in build
    guard = [r for r in runs if "guard-*.whl" in r]
    assert guard and all("--no-deps" in r for r in guard)
    copied = set(copied_sources())
    assert {"requirements.lock", "requirements-build.lock", "pyproject.toml", "guard"} <= copied


# --- base, labels, user ------------------------------------------------------------------------

def test_every_stage_starts_from_the_one_base_argument() -> None:
    """`ARG BASE` precedes the first FROM, and both stages are built on it (one place to pin)."""
    ops = instructions()
    first_from = next(i for i, (op, _) in enumerate(ops) if op == "FROM")
    (base,) = [args for op, args in ops[:first_from] if op == "ARG" and args.startswith("BASE=")]
    assert re.fullmatch(r"BASE=docker\.io/library/python:3\.11-slim-bookworm(@sha256:[0-9a-f]{64})?", base)
    assert [args.split()[0] for op, args in ops if op == "FROM"] == ["${BASE}", "${BASE}"]


def test_the_image_carries_oci_labels_from_build_arguments() -> None:
    """source, version, revision and licenses are set, version defaulting to pyproject.toml's."""
    ops = instructions()
    final = max(i for i, (op, _) in enumerate(ops) if op == "FROM")
    args = dict(a.split("=", 1) if "=" in a else (a, "") for op, a in ops[final:] if op == "ARG")
    assert args["VERSION"] == VERSION and args["REVISION"] == "unknown" and "BASE" in args
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"',
                             " ".join(a for op, a in ops[final:] if op == "LABEL")))
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    assert labels["org.opencontainers.image.source"] == "${SOURCE}" and args["SOURCE"].startswith("https://")
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_the_image_user_and_ports_are_the_ones_the_deployment_expects() -> None:
    """USER is the numeric uid/gid the pod runs as; EXPOSE lists the container's ports."""
    from tests.unit.test_manifests_render import render
    docs = render("overlays/single")
    (deployment,) = find(docs, "Deployment", "guard")
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    ops = dict(instructions())
    assert ops["USER"] == f"{pod['runAsUser']}:{pod['runAsGroup']}"
    assert sorted(ops["EXPOSE"].split()) == sorted(str(p["containerPort"]) for p in container(docs)["ports"])


def _tools(tmp_path: Path, *fakes: tuple[str, str]) -> dict[str, str]:
    """An environment whose PATH holds the programs the script uses and the given fake ones."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sed", "head", "awk", "mktemp", "cat", "rm", "dirname", "cut", "sha256sum"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    for name, script in fakes:
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
        (bin_dir / name).chmod(0o755)
    return {"PATH": str(bin_dir), "CONTAINERFILE": str(tmp_path / "Containerfile")}


def _image_digest(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash
    return subprocess.run([bash, str(ROOT / "scripts" / "image-digest.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=30)


def test_image_digest_pins_the_base_to_what_the_registry_answers(tmp_path: Path) -> None:
    """`make image-digest` prints ARG BASE=tag@digest and, with --write, replaces the line (again later)."""
    shutil.copy(ROOT / "Containerfile", tmp_path / "Containerfile")
    first, second = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    env = _tools(tmp_path, ("crane", '[ "$1 $2" = "digest docker.io/library/python:3.11-slim-bookworm" ]'
                                     ' && cat "$(dirname "$0")/answer"'))
    (tmp_path / "bin" / "answer").write_text(first + "\n")
    out = _image_digest(env, "--write")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"ARG BASE=docker.io/library/python:3.11-slim-bookworm@{first}\n"
    (tmp_path / "bin" / "answer").write_text(second + "\n")
    assert _image_digest(env, "--write").returncode == 0
    text = (tmp_path / "Containerfile").read_text()
    assert f"ARG BASE=docker.io/library/python:3.11-slim-bookworm@{second}\n" in text and first not in text
    unpinned = re.compile(r"@sha256:[0-9a-f]{64}")
    assert unpinned.sub("", text) == unpinned.sub("", (ROOT / "Containerfile").read_text())


def test_image_digest_says_what_it_needs_instead_of_guessing(tmp_path: Path) -> None:
    """Without a registry client, or with an answer that is not a digest, nothing is written."""
    shutil.copy(ROOT / "Containerfile", tmp_path / "Containerfile")
    out = _image_digest(_tools(tmp_path), "--write")
    assert out.returncode == 1 and "crane, skopeo or docker buildx" in out.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(ROOT / "Containerfile", bad / "Containerfile")
    out = _image_digest(_tools(bad, ("crane", "echo 'UNAUTHORIZED'")), "--write")
    assert out.returncode == 1 and "unexpected digest" in out.stderr
    assert (bad / "Containerfile").read_text() == (ROOT / "Containerfile").read_text()


# --- the image in the manifests -----------------------------------------------------------------

def render_user_overlay(tmp_path: Path, kustomization: Doc) -> tuple[Doc, ...]:
    """Render `kustomization` as a user's own overlay in `tmp_path`, with the real kubectl."""
    assert KUBECTL, "kubectl must be on PATH to render manifests/"
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    out = subprocess.run([KUBECTL, "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def _relative(overlay: str, tmp_path: Path) -> str:
    return os.path.relpath(MANIFESTS / "overlays" / overlay, tmp_path)


def test_the_manifests_name_the_image_guard_at_the_project_version() -> None:
    """The base names `guard:<pyproject version>` and nothing renames it before the user's overlay."""
    from tests.unit.test_manifests_render import render
    for overlay in OVERLAYS:
        assert container(render(f"overlays/{overlay}"))["image"] == f"guard:{VERSION}"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
@pytest.mark.parametrize(("entry", "image"), [
    ({"newName": "registry.example.com/guard", "newTag": "1.2.3"}, "registry.example.com/guard:1.2.3"),
    ({"newName": "registry.example.com/guard", "digest": "sha256:" + "c" * 64},
     "registry.example.com/guard@sha256:" + "c" * 64),
    ({"newTag": "dev"}, "guard:dev"),
])
def test_an_images_entry_named_guard_replaces_the_image(overlay: str, entry: Doc, image: str,
                                                        tmp_path: Path) -> None:
    """`images: [{name: guard, ...}]` in an overlay of ours rewrites the container's image."""
    docs = render_user_overlay(tmp_path, {"resources": [_relative(overlay, tmp_path)],
                                          "images": [{"name": "guard", **entry}]})
    assert container(docs)["image"] == image


def documented_overlay() -> Doc:
    """The YAML block under "### Your own overlay" in docs/deploying.md."""
    text = (ROOT / "docs" / "deploying.md").read_text()
    section = text[text.index("### Your own overlay"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block
    return yaml.safe_load(block[1])  # type: ignore[no-any-return]


def test_the_documented_overlay_changes_what_it_says(tmp_path: Path) -> None:
    """docs/deploying.md's own overlay, rendered: its image, policies, Service type and NetworkPolicy."""
    doc = documented_overlay()
    (base,) = doc["resources"]
    doc["resources"] = [_relative(base.rsplit("/", 1)[1], tmp_path)]
    (generator,) = doc["configMapGenerator"]
    for name in generator["files"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\n")
    docs = render_user_overlay(tmp_path, doc)
    (entry,) = doc["images"]
    assert container(docs)["image"] == f"{entry['newName']}:{entry['newTag']}"
    policies = [d for d in find(docs, "ConfigMap") if d["metadata"]["name"].startswith("guard-policies")]
    assert [sorted(d["data"]) for d in policies] == [sorted(Path(f).name for f in generator["files"])]
    (service,) = find(docs, "Service", "guard")
    assert service["spec"]["type"] == "LoadBalancer"
    (policy,) = find(docs, "NetworkPolicy", "guard")
    (peer,) = policy["spec"]["ingress"][1]["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "observability"}
    assert [p["port"] for p in policy["spec"]["ingress"][1]["ports"]] == ["admin"]
