#!/usr/bin/env python3
"""Install Detectron2 v0.6 from PyPI's ``pb1-detectron2==0.6`` source archive.

That archive holds the official v0.6 ``detectron2/`` Python package (and its model-zoo
configs) but no C++ sources, so its own setup.py cannot build. This step:

1. downloads the archive (or takes ``--archive``) and checks its sha256 against the pin
   below *before* anything is unpacked or installed;
2. copies only its ``detectron2/`` folder into a staging folder, untouched, and adds one
   file: ``detectron2/_C.py``, our stand-in for the compiled ops
   (``bootstrap/detectron2_C.py``);
3. writes a minimal ``pyproject.toml`` (name ``detectron2``, version ``0.6``, the model-zoo
   configs as package data) and ``pip install``s the staging folder with the v0.6
   constraints, so pip records detectron2 0.6 as installed.

``install_from_source`` is the other route: the official Detectron2 (current main, with its
compiled C++ ops) built from a source tree, a ``git archive`` tarball or a git URL.

Standard library only: it runs before anything else is installed. ``bootstrap/setup_env.py``
calls it; it can also be run by hand (``python -m bootstrap.install_detectron2``).
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHIVE_NAME = "pb1-detectron2-0.6.tar.gz"
ARCHIVE_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
ARCHIVE_PREFIX = "pb1-detectron2-0.6/detectron2/"
INDEX_URL = "https://pypi.org/simple/pb1-detectron2/"
CONSTRAINTS = REPO / "requirements" / "detectron2-v0.6-constraints.txt"
STANDIN_C = Path(__file__).resolve().parent / "detectron2_C.py"

# Detectron2 v0.6's install_requires, minus `black==21.4b2` (only LazyConfig.save uses it,
# to pretty-print; that 2021 release breaks on current click) and `future` (unused on
# Python 3). fvcore/iopath keep v0.6's own upper bounds.
DETECTRON2_REQUIRES = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "pydot",
    "omegaconf>=2.1",
    "hydra-core>=1.1",
    "numpy",
    "opencv-python-headless",
]

PYPROJECT = """\
# Written by semseg_heads/bootstrap/install_detectron2.py: packages the unmodified detectron2/
# folder of PyPI's pb1-detectron2==0.6 archive (official v0.6) plus our detectron2/_C.py.
[build-system]
requires = ["setuptools<81", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "detectron2"
version = "0.6"
description = "Detectron2 v0.6 (Python package from pb1-detectron2==0.6, no compiled ops)"
requires-python = ">=3.7"
dependencies = {dependencies}

[tool.setuptools.packages.find]
include = ["detectron2*"]
namespaces = true

[tool.setuptools.package-data]
"*" = ["*.yaml", "*.py", "**/*.yaml", "**/*.py"]
"""


class SetupError(RuntimeError):
    """A set-up step failed in a way the user can act on; the message says how."""


def log(msg: str) -> None:
    print(f"[install_detectron2] {msg}", flush=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_archive(path: Path, expected: str = ARCHIVE_SHA256) -> None:
    """Raise ``SetupError`` unless ``path`` has the pinned sha256."""
    actual = sha256_of(path)
    if actual != expected:
        raise SetupError(
            f"{path}: sha256 {actual} does not match the pinned {expected} for {path.name}. "
            "The archive is corrupt or has been tampered with; nothing was installed. "
            "Delete the file and run set-up again to download it afresh."
        )


class _LinkParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.links.append(href)


def _network_error(url: str, e: BaseException, fix: str) -> SetupError:
    """One line naming the URL and what to do (issue 9), not a urllib traceback."""
    reason = getattr(e, "reason", None) or e
    return SetupError(f"cannot fetch {url} ({reason}); check the network or proxy (https_proxy), {fix}")


def find_archive_url(index_url: str = INDEX_URL) -> str:
    """The archive's download URL from PyPI's simple index (PEP 503)."""
    try:
        with urllib.request.urlopen(index_url, timeout=60) as response:
            parser = _LinkParser()
            parser.feed(response.read().decode("utf-8"))
    except OSError as e:  # URLError and HTTPError are OSErrors
        raise _network_error(index_url, e, f"or download {ARCHIVE_NAME} by hand and pass --archive") from None
    for link in parser.links:
        url = urllib.parse.urljoin(index_url, link)
        if urllib.parse.urlsplit(url).path.endswith("/" + ARCHIVE_NAME):
            return url.split("#", 1)[0]
    raise SetupError(f"{index_url} lists no {ARCHIVE_NAME}")


def download(url: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a partial download."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            mode = "ab" if start and response.status == 206 else "wb"
            with open(part, mode) as f:
                shutil.copyfileobj(response, f)
    except OSError as e:
        raise _network_error(
            url, e, f"then run again (it resumes), or save the file by hand as {dest}"
        ) from None
    part.replace(dest)
    return dest


def obtain_archive(cache_dir: Path) -> Path:
    cached = cache_dir / ARCHIVE_NAME
    if not cached.exists():
        url = find_archive_url()
        log(f"downloading {url}")
        download(url, cached)
    return cached


def stage_package(archive: Path, staging: Path, standin_c: Path = STANDIN_C) -> Path:
    """Copy the archive's ``detectron2/`` into ``staging`` with our ``_C.py`` and pyproject."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    root = staging.resolve()
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(ARCHIVE_PREFIX)]
        if not members:
            raise SetupError(f"{archive}: no {ARCHIVE_PREFIX} folder in the archive")
        for member in members:
            if not (member.isfile() or member.isdir()):
                raise SetupError(f"{archive}: unexpected member type for {member.name}")
            target = (root / member.name[len("pb1-detectron2-0.6/") :]).resolve()
            if root not in target.parents:
                raise SetupError(f"{archive}: member {member.name} would land outside {root}")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, dst)
    compiled_ops = root / "detectron2" / "_C.py"
    if compiled_ops.exists():
        raise SetupError(f"{archive}: already contains detectron2/_C.py; refusing to overwrite it")
    shutil.copyfile(standin_c, compiled_ops)
    deps = "[\n" + "".join(f'    "{d}",\n' for d in DETECTRON2_REQUIRES) + "]"
    (root / "pyproject.toml").write_text(PYPROJECT.format(dependencies=deps))
    return root


def pip(python: str, *args: str) -> None:
    cmd = [python, "-m", "pip", "install", "--quiet", *args]
    log(" ".join(cmd))
    if subprocess.run(cmd).returncode != 0:
        index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
        raise SetupError(
            f"pip install {' '.join(args)} failed (pip's message is above); if it could not reach "
            f"{index}, check the network or proxy (https_proxy) or set PIP_INDEX_URL, then run again"
        )


def install_from_archive(
    archive: Path, python: str, staging: Path, expected_sha256: str = ARCHIVE_SHA256
) -> None:
    """Verify, stage and pip-install the archive into ``python``'s environment."""
    verify_archive(archive, expected_sha256)  # before anything touches the environment
    log(f"{archive.name}: sha256 verified ({expected_sha256[:12]}...)")
    staged = stage_package(archive, staging)
    # No build isolation: the build needs no download of its own and sees the pins.
    pip(python, "-c", str(CONSTRAINTS), "wheel", "setuptools<81")
    pip(python, "--no-build-isolation", "-c", str(CONSTRAINTS), str(staged))


def installed_detectron2(python: str) -> str | None:
    """``"<version> <_C kind>"`` for the detectron2 importable by ``python``, else None."""
    probe = (
        "import importlib.util, importlib.metadata as m, sys\n"
        "if importlib.util.find_spec('detectron2') is None: sys.exit(3)\n"
        "import detectron2\n"
        "spec = importlib.util.find_spec('detectron2._C')\n"
        "kind = 'none' if spec is None else ('standin' if spec.origin.endswith('.py') else 'compiled')\n"
        "print(detectron2.__version__, kind, spec.origin if spec else '')\n"
    )
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if result.returncode == 3:
        return None
    if result.returncode != 0:
        raise SetupError(f"detectron2 is installed but fails to import:\n{result.stderr}")
    return result.stdout.strip()


def verify_against_sums(archive: Path) -> None:
    """Check ``archive`` against a ``SHA256SUMS`` file beside it, when there is one."""
    sums = archive.with_name("SHA256SUMS")
    if not sums.exists():
        log(f"{archive.name}: no SHA256SUMS beside it; not verified")
        return
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == archive.name:
            verify_archive(archive, parts[0])
            log(f"{archive.name}: sha256 verified against {sums}")
            return
    raise SetupError(f"{sums}: lists no sha256 for {archive.name}")


def _unpack_source_archive(archive: Path, dest: Path) -> Path:
    """Unpack a ``git archive``-style tarball into ``dest``; return its single top folder."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    root = dest.resolve()
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            if target != root and root not in target.parents:
                raise SetupError(f"{archive}: member {member.name} would land outside {root}")
            if member.issym() or member.islnk():
                link = (target.parent / member.linkname).resolve()
                if root not in link.parents:
                    raise SetupError(f"{archive}: link {member.name} points outside {root}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
        else:  # Python < 3.12 without the filter: the members were checked above
            tar.extractall(root)
    tops = [p for p in root.iterdir() if p.is_dir()]
    if len(tops) != 1 or not (tops[0] / "setup.py").exists():
        raise SetupError(f"{archive}: expected one top folder with detectron2's setup.py, found {tops}")
    return tops[0]


def install_from_source(python: str, source: str, cache_dir: Path) -> str:
    """Build and install the official Detectron2 (compiled ops included) from ``source``.

    ``source`` is a local source tree, a ``.tar.gz`` of one (``git archive`` layout), or a
    pip-style git URL (``git+https://github.com/facebookresearch/detectron2.git``). Returns
    the pip requirement that was installed. Torch must already be in the environment: the
    build imports it, hence ``--no-build-isolation`` (pip's isolated build has no torch).
    """
    local = Path(source).expanduser()
    if local.is_file():
        verify_against_sums(local)
        name = local.name.split(".tar")[0]
        target = str(_unpack_source_archive(local, cache_dir / "build" / name))
    elif local.is_dir():
        if not (local / "setup.py").exists():
            raise SetupError(f"{local}: not a Detectron2 source tree (no setup.py)")
        target = str(local.resolve())
    elif source.startswith(("git+", "https://", "http://")):
        target = source if source.startswith("git+") else "git+" + source
    else:
        raise SetupError(
            f"--detectron2-source {source!r}: expected a source folder, a .tar.gz of one, "
            "or a git URL (git+https://github.com/facebookresearch/detectron2.git)"
        )
    # setuptools<81: Detectron2's model_zoo imports pkg_resources; ninja: parallel C++ build.
    pip(python, "wheel", "setuptools<81", "ninja")
    pip(python, "--no-build-isolation", target)
    return target


def ensure_detectron2(
    python: str, cache_dir: Path, archive: Path | None = None, source: str | None = None
) -> str:
    """Keep an installed detectron2; otherwise install it: from ``source`` (official build,
    compiled ops) when given, else v0.6 from the verified archive.

    Returns ``"kept"``, ``"source"`` or ``"archive"``: which path was taken.
    """
    found = installed_detectron2(python)
    if found is not None and source is not None:
        if found.split(" ")[1] != "compiled":
            raise SetupError(
                f"{python}: already has detectron2 without compiled ops ({found}); building "
                f"{source} on top of it would mix two installs. Use a fresh environment (VENV=...)."
            )
        log(f"detectron2 {found.split(' ')[0]} with compiled ops already installed; keeping it")
        return "kept"
    if source is not None:
        install_from_source(python, source, cache_dir)
        return "source"
    if found is not None:
        version, kind, origin = (found.split(" ", 2) + ["", ""])[:3]
        if kind == "standin" and Path(origin).read_bytes() != STANDIN_C.read_bytes():
            shutil.copyfile(STANDIN_C, origin)  # our own file, updated in place
            log(f"updated the detectron2._C stand-in at {origin}")
        log(f"detectron2 {version} already installed (compiled ops: {kind}); keeping it")
        return "kept" if kind != "standin" else "archive"
    version = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if tuple(int(x) for x in version.split(".")) > (3, 11):
        raise SetupError(
            f"Python {version}: the detectron2 v0.6 archive path needs numpy 1.23.5, which has "
            "no wheels beyond Python 3.11. Use Python 3.11 (PYTHON=python3.11 make ...), or "
            "install the official detectron2 from source into the environment first (README)."
        )
    archive = archive or obtain_archive(cache_dir / "downloads")
    try:
        install_from_archive(archive, python, cache_dir / "build" / "detectron2-0.6")
    except SetupError:
        if archive.parent == cache_dir / "downloads":
            archive.unlink()  # a bad download must not be reused by the next run
        raise
    return "archive"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="Python of the target environment")
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".cache")
    parser.add_argument("--archive", type=Path, help=f"a local {ARCHIVE_NAME} instead of downloading")
    parser.add_argument(
        "--source",
        help="build the official Detectron2 (compiled ops) from a source folder, .tar.gz or git URL",
    )
    args = parser.parse_args(argv)
    try:
        ensure_detectron2(args.python, args.cache_dir, args.archive, args.source)
    except SetupError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
