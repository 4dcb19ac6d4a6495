"""Check a dataset folder and report every problem at once.

Problems found: image without mask, mask without image, two files with one stem, size mismatch,
unreadable, truncated or zero-byte file, non-integer ids (Chair Segments), colour masks without a
palette, implausible value sets (what ``mask_format="auto"`` refuses), mask values that map to no
class, an empty folder.
Nothing is written. ``tools/validate_dataset.py`` is the command-line front end.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from semseg_heads.data.chair_segments import CHAIR_THRESHOLD, find_splits, resolution_folder
from semseg_heads.data.folder import FolderDataset
from semseg_heads.data.labelmaps import (
    EMPTY_FOLDER,
    Problem,
    check_all,
    foreground_by_threshold,
    pair_files,
)


@dataclass
class ValidationReport:
    """Every problem found under ``root``; ``checked`` counts the image/mask pairs read."""

    root: str
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    decided: str = ""  # how the masks are read, as registration would read them

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        decided = [self.decided] if self.decided else []
        if self.ok:
            return "\n".join(decided + [f"{self.root}: OK ({self.checked} image/mask pairs checked)"])
        counts = Counter(p.kind for p in self.problems)
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        head = f"{self.root}: {len(self.problems)} problem(s) in {self.checked} pair(s) checked: {summary}"
        return "\n".join(decided + [head] + [f"  {p}" for p in self.problems])


def validate_chair_segments(path: str) -> ValidationReport:
    """Check a Chair Segments folder: the root (holding ``Chair064/``...), one resolution
    folder, or one split folder (holding ``image/`` and ``mask/``)."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    if os.path.isdir(os.path.join(path, "image")):
        split_dirs = [path]
    else:
        name = os.path.basename(path.rstrip(os.sep))
        if name.startswith("Chair") and name[5:].isdigit():
            root, resolutions = os.path.dirname(path), [int(name[5:])]
        else:
            root, resolutions = path, None
        found = find_splits(root, resolutions) if resolutions else find_splits(root)
        split_dirs = [os.path.join(root, resolution_folder(r), s) for r, s in found]
    if not split_dirs:
        raise FileNotFoundError(f"no Chair Segments split (a folder with image/ and mask/) under '{path}'")
    report = ValidationReport(path)
    for d in split_dirs:
        if not os.path.isdir(os.path.join(d, "mask")):
            missing = Problem(os.path.join(d, "mask"), "missing folder", "every split needs mask/")
            report.problems.append(missing)
            continue
        pairs, problems = pair_files(
            os.path.join(d, "image"), os.path.join(d, "mask"), os.path.join(d, "label"), integer_ids=True
        )
        report.checked += len(pairs)
        if not pairs and not problems:
            report.problems.append(Problem(d, EMPTY_FOLDER, "no image/mask pairs in image/ and mask/"))
        report.problems += check_all(
            pairs, lambda m, p: (foreground_by_threshold(m, CHAIR_THRESHOLD), None), problems
        )
    return report


def validate_folder_dataset(image_dir: str, mask_dir: str, **options) -> ValidationReport:
    """Check a user's folder with the options :func:`register_folder_dataset` would get."""
    options.pop("instances", None)
    options.pop("skip_bad_files", None)
    ds = FolderDataset(options.pop("name", "validation"), image_dir, mask_dir, **options)
    pairs, _ = ds.pairs()
    problems = ds.validate()
    return ValidationReport(f"{ds.image_dir} + {ds.mask_dir}", len(pairs), problems, ds.describe(len(pairs)))


__all__ = ["ValidationReport", "validate_chair_segments", "validate_folder_dataset"]
