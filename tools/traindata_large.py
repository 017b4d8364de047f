#!/usr/bin/env python3
"""Lay out Tiny ImageNet-200 and DAVIS 2016 val beside the repository in their native layouts.

1. Fetch both repositories with the search tool's fetch: github:rangeetpan/IMagenet, github:MathLee/EOR-VOS
   (snapshots land in MIRROR/OWNER+NAME/repo).
2. python tools/traindata_large.py [--mirror ../.mirror] [--out ../traindata_large]
3. python ../shared/tools/traindata/check_reserved.py on the image folders (this script runs it).

Commits and paths as pinned in ../shared/tools/traindata/LARGER.md:
    OUT/tiny-imagenet-200/{train,val,wnids.txt,words.txt}   (train/<wnid>/<wnid>_boxes.txt, val/val_annotations.txt)
    OUT/DAVIS/{JPEGImages,Annotations}/480p/<seq>/          (frames NNNNN.jpg, masks NNNNN.png)
The bytes are those of the snapshots (git archive); nothing is re-encoded.
"""
import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = [
    ("rangeetpan/IMagenet", "6125d8a1069df02232eb57678fd46c700411dd45",
     ["tiny-imagenet-200/train", "tiny-imagenet-200/val", "tiny-imagenet-200/wnids.txt", "tiny-imagenet-200/words.txt"]),
    ("MathLee/EOR-VOS", "1bde4d5f936304c5ad69e301956e9d65082dfbc8", ["DAVIS/JPEGImages/480p", "DAVIS/Annotations/480p"]),
]


def git_dir(mirror, repo):
    folder = Path(mirror) / repo.replace("/", "+") / "repo"
    if (folder / ".git").is_dir():
        folder = folder / ".git"
    if not (folder / "objects").is_dir():
        sys.exit(f"missing snapshot of {repo}: fetch github:{repo} first (looked in {folder})")
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mirror", default=str(REPO.parent / ".mirror"))
    parser.add_argument("--out", default=str(REPO.parent / "traindata_large"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for repo, commit, paths in SOURCES:
        archive = subprocess.Popen(["git", "--git-dir", str(git_dir(args.mirror, repo)), "archive", commit, *paths],
                                   stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(out)], stdin=archive.stdout, check=True)
        if archive.wait():
            sys.exit(f"git archive of {repo}@{commit} failed (is the snapshot at that commit?)")
        print(f"{repo}@{commit[:12]} -> {out}")
    check = REPO.parent / "shared" / "tools" / "traindata" / "check_reserved.py"
    folders = [out / "tiny-imagenet-200" / "train", out / "tiny-imagenet-200" / "val", out / "DAVIS" / "JPEGImages" / "480p"]
    if check.is_file():
        sys.exit(subprocess.run([sys.executable, str(check), *map(str, folders)]).returncode)
    print(f"{check} not found: run check_reserved.py on {', '.join(map(str, folders))} yourself")


if __name__ == "__main__":
    main()
