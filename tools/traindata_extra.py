#!/usr/bin/env python3
"""Lay out the 7 extra training sequences of traindata_extra.tsv (sources in mlt_plugin/weights/README.md).

1. Fetch each repository of the table (columns repo and gt_repo) with the search tool's fetch
   (github:OWNER/NAME); snapshots land in MIRROR/OWNER+NAME/repo.
2. python tools/traindata_extra.py [--mirror ../.mirror] [--out ../traindata_extra]
3. python ../shared/tools/traindata/check_reserved.py ../traindata_extra/otb   (0 overlap when written)

The OTB layout of ../shared/tools/traindata/assemble.py: OUT/otb/NAME/img/0001.jpg... (frames ``first`` to
``first + count - 1`` of the frames folder sorted by name, renumbered from 1; non-JPEG frames re-encoded
as JPEG, quality 95) and groundtruth_rect.txt (1-based x,y,w,h; NaN,NaN,NaN,NaN where a box is missing,
empty or all zero, e.g. MIL faceocc's unannotated frames).
"""
import argparse
import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

TABLE = Path(__file__).with_suffix(".tsv")


def git(mirror, repo, *args):
    folder = Path(mirror) / repo.replace("/", "+") / "repo"
    if (folder / ".git").is_dir():
        folder = folder / ".git"
    if not (folder / "objects").is_dir():
        sys.exit(f"missing snapshot of {repo}: fetch github:{repo} first (looked in {folder})")
    return subprocess.run(["git", "--git-dir", str(folder), *args], check=True, capture_output=True).stdout


def boxes(text):
    rows = []
    for line in text.decode("utf-8", "replace").splitlines():
        values = [float(v) for v in re.split(r"[,\s;]+", line.strip()) if v]
        if not values:
            continue
        valid = len(values) == 4 and not any(math.isnan(v) for v in values) and values[2] > 0 and values[3] > 0
        rows.append(values if valid else None)
    return rows


def number(value):
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def lay_out(row, mirror, out):
    first, count = int(row["first"]), int(row["count"])
    listing = git(mirror, row["repo"], "ls-tree", "--name-only", f"{row['commit']}:{row['frames_dir']}").decode()
    frames = sorted(n for n in listing.splitlines() if n.lower().endswith((".jpg", ".jpeg", ".png", ".bmp")))
    frames = frames[first - 1 : first - 1 + count]
    gt = boxes(git(mirror, row["gt_repo"], "show", f"{row['gt_commit']}:{row['gt_file']}"))[:count]
    if len(frames) != count or len(gt) != count:
        sys.exit(f"{row['name']}: expected {count} frames and boxes, found {len(frames)} frames and {len(gt)} boxes")
    folder = Path(out) / "otb" / row["name"]
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(frames, 1):
        data = git(mirror, row["repo"], "show", f"{row['commit']}:{row['frames_dir']}/{name}")
        target = folder / "img" / f"{index:04d}.jpg"
        if data[:2] == b"\xff\xd8":  # JPEG: the original bytes
            target.write_bytes(data)
        else:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                sys.exit(f"{row['name']}: cannot decode {name}")
            cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    lines = ["NaN,NaN,NaN,NaN" if b is None else ",".join(number(v) for v in b) for b in gt]
    (folder / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")
    print(f"{row['name']}: {count} frames, {sum(b is None for b in gt)} without a box")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", default="../.mirror", help="fetched snapshots (default ../.mirror)")
    parser.add_argument("--out", default="../traindata_extra", help="output folder (default ../traindata_extra)")
    args = parser.parse_args()
    with open(TABLE, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            lay_out(row, args.mirror, args.out)


if __name__ == "__main__":
    main()
