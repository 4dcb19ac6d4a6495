"""Download the official Chair Segments archives and unpack them safely.

The URLs are those of ``download_data.sh`` in the Chair Segments repository
(github.com/uvavision/chair-segments); two versions of that script name two hosts, tried in
order. Downloads go through ``torch.hub.download_url_to_file``; the archive's sha256 is printed
(and checked when given), every member is checked before anything is extracted (no absolute paths,
no ``..``, no links: nothing may land outside the target), and existing data is only replaced
when asked to.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import posixpath
import re
import shutil
import stat
import sys
import urllib.error
import zipfile

from torch.hub import download_url_to_file

from semseg_heads.data.chair_segments import builtin_root, resolution_folder

logger = logging.getLogger(__name__)

CHAIR_SEGMENTS_URLS: dict[int, tuple[str, ...]] = {
    32: ("https://www.cs.rice.edu/~vo9/chair-segments/Chair032.zip",),
    64: (
        "https://www.cs.rice.edu/~vo9/chair-segments/Chair064.zip",
        "https://www.cs.virginia.edu/~lp2rv/Datasets/Chair064.zip",
    ),
    128: ("https://www.cs.virginia.edu/~lp2rv/Datasets/Chair128.zip",),
}
SPLIT_NAMES = ("train", "val", "test")
JUNK_PREFIXES = ("__MACOSX/",)


class DownloadError(RuntimeError):
    """The archive could not be fetched completely."""


class CorruptArchiveError(ValueError):
    """The archive is not a readable zip, or a member fails its CRC check."""


class UnsafeArchiveError(ValueError):
    """Some member would be written outside the target folder (or is a link)."""


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_file(url: str, dest: str, *, progress: bool = True) -> str:
    """Fetch ``url`` to ``dest`` with ``torch.hub.download_url_to_file`` (which writes a
    temporary file and renames it when complete, so a broken download never sits at ``dest``);
    an existing ``dest`` is kept. Failures are a ``DownloadError`` naming the URL and the fix.
    """
    if os.path.exists(dest):
        logger.info("%s already downloaded", dest)
        return dest
    try:
        # torch's bar goes to stderr; on a terminal only, not into log files.
        download_url_to_file(url, dest, progress=progress and sys.stderr.isatty())
    except urllib.error.HTTPError as e:
        raise DownloadError(
            f"{url}: HTTP {e.code} {e.reason}; check the URL or pass another with --url"
        ) from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"{url}: cannot connect or read ({reason}); check the network or a proxy (https_proxy), "
            f"or download it by hand to '{dest}' and run again"
        ) from e
    return dest


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in posixpath.normpath(name).split("/") or ".." in name.split("/"):
        return "'..' in path"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    return None


def check_zip(path: str) -> list[zipfile.ZipInfo]:
    """Members of a zip after checking it is readable, CRC-clean and safe to extract."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            bad = [(i.filename, p) for i in infos if (p := _member_problem(i))]
            if bad:
                listing = ", ".join(f"'{n}' ({p})" for n, p in bad[:10])
                raise UnsafeArchiveError(
                    f"{path}: {len(bad)} member(s) would land outside the target folder, "
                    f"nothing extracted: {listing}"
                )
            first_bad = zf.testzip()
    except zipfile.BadZipFile as e:
        raise CorruptArchiveError(f"{path} is not a readable zip archive: {e}") from e
    except (EOFError, OSError, zipfile.LargeZipFile) as e:
        raise CorruptArchiveError(f"{path} could not be read: {e}") from e
    if first_bad is not None:
        raise CorruptArchiveError(f"{path}: member '{first_bad}' fails its CRC check (corrupt download?)")
    return infos


def extract_chair_segments_zip(path: str, root: str, resolution: int, *, force: bool = False) -> str:
    """Unpack an official archive into ``<root>/Chair0XX`` (whether or not the zip has that top
    folder) through a staging folder; returns the resolution folder."""
    folder = resolution_folder(resolution)
    target = os.path.join(root, folder)
    infos = check_zip(path)
    members = [i for i in infos if not i.filename.startswith(JUNK_PREFIXES)]
    if len(members) != len(infos):
        logger.info(
            "%s: not extracting %d macOS metadata member(s) (__MACOSX/)", path, len(infos) - len(members)
        )
    tops = {i.filename.replace("\\", "/").split("/")[0] for i in members}
    strip = tops == {folder}
    if not strip and len(tops) == 1 and re.fullmatch(r"Chair\d+", next(iter(tops))):
        raise ValueError(f"{path} holds {next(iter(tops))}/, not {folder}/: wrong resolution?")
    staging = os.path.join(root, f".{folder}.unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    staging_real = os.path.realpath(staging)
    try:
        with zipfile.ZipFile(path) as zf:
            for info in members:
                name = info.filename.replace("\\", "/")
                rel = name.split("/", 1)[1] if strip and "/" in name else ("" if strip else name)
                if not rel:
                    continue
                out = os.path.realpath(os.path.join(staging, rel))
                if os.path.commonpath([out, staging_real]) != staging_real:  # belt and braces
                    raise UnsafeArchiveError(f"{path}: member '{info.filename}' escapes the target folder")
                if name.endswith("/"):
                    os.makedirs(out, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if os.path.exists(target):
            if not force:
                raise FileExistsError(f"'{target}' exists; pass force=True (--force) to replace it")
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def download_chair_segments(
    resolution: int = 64,
    root: str | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    keep_archive: bool = False,
    progress: bool = True,
) -> dict:
    """Download ``Chair0XX.zip`` and unpack it into ``<root>/Chair0XX`` (root default:
    ``$DETECTRON2_DATASETS/ChairSegments``). Refuses to replace existing data unless ``force``.

    Returns ``{"archive", "sha256", "target", "splits": {split: images}}``.
    """
    resolution = int(resolution)
    root = os.path.abspath(os.path.expanduser(root)) if root else builtin_root()
    folder = resolution_folder(resolution)
    target = os.path.join(root, folder)
    if os.path.exists(target) and os.listdir(target) and not force:
        raise FileExistsError(f"'{target}' already holds data; pass force=True (--force) to replace it")
    urls = [url] if url else list(CHAIR_SEGMENTS_URLS.get(resolution, ()))
    if not urls:
        raise ValueError(f"no known URL for resolution {resolution}; pass url=")
    os.makedirs(root, exist_ok=True)
    archive = os.path.join(root, folder + ".zip")
    errors = []
    for u in urls:
        try:
            download_file(u, archive, progress=progress)
            break
        except DownloadError as e:
            logger.warning("%s", e)
            errors.append(str(e))
    else:
        raise DownloadError("could not download Chair Segments: " + "; ".join(errors))
    digest = sha256_file(archive)
    print(f"sha256 {digest}  {archive}")
    if sha256 and digest.lower() != sha256.lower():
        os.remove(archive)
        raise CorruptArchiveError(f"{archive}: sha256 {digest} != expected {sha256}; removed it")
    try:
        extract_chair_segments_zip(archive, root, resolution, force=force)
    except CorruptArchiveError as e:
        os.remove(archive)
        raise CorruptArchiveError(f"{e}; removed the archive, run again to download it anew") from e
    except UnsafeArchiveError as e:
        # A rejected archive must not be picked up as "already downloaded" by the next run.
        os.remove(archive)
        raise UnsafeArchiveError(f"{e}; removed the archive (check the URL: {urls[0]})") from e
    if not keep_archive:
        os.remove(archive)
    splits = {}
    for s in sorted(os.listdir(target)):
        img = os.path.join(target, s, "image")
        if os.path.isdir(img):
            splits[s] = len(os.listdir(img))
    return {
        "archive": archive if keep_archive else None,
        "sha256": digest,
        "target": target,
        "splits": splits,
    }
