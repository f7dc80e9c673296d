#!/usr/bin/env python3
"""Converts the raw MMC4 layout into webdataset tar shards as aimc reads them.

Input, as MMC4 is distributed: documents one JSON object per line in .jsonl
files, given plainly or inside .zip files (docs_shard_{i}_v2.jsonl.zip), and
the images downloaded by the user into one folder as <images>/<image_name>.

Output: <out>/%09d.tar (PAX-format tar, as webdataset / OpenFlamingo's
converter write them), each holding up to --docs-per-shard documents as
"<key>.json" members. Every image_info entry gets "image_base64": the image
file's bytes, base64-encoded, unchanged (no re-encoding). Images missing from
the folder are removed from image_info, together with their row of
similarity_matrix, and counted; a document left with no image is dropped
unless --keep-imageless. Malformed lines are skipped and counted.

Keys are "%012d" % (running index of the document over all inputs), so keys
are unique across the output and the result is the same on every run.
Standard library only.
"""
import argparse
import base64
import io
import json
import os
import sys
import tarfile
import zipfile


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Convert raw MMC4 (.jsonl / .jsonl.zip documents + an image folder) "
        "into webdataset tar shards with embedded base64 images, as aimc reads them.")
    p.add_argument("inputs", nargs="+",
                   help=".jsonl or .zip files (every .jsonl inside a .zip is read), or folders "
                   "holding them (read in sorted name order)")
    p.add_argument("--images", required=True, help="folder of downloaded images, <images>/<image_name>")
    p.add_argument("--out", required=True, help="output folder for %%09d.tar shards (created if missing)")
    p.add_argument("--docs-per-shard", type=int, default=1000, help="documents per shard (default 1000)")
    p.add_argument("--first-shard", type=int, default=0, help="number of the first shard written (default 0)")
    p.add_argument("--keep-imageless", action="store_true",
                   help="keep documents left with no image (default: drop them)")
    args = p.parse_args(argv)
    if args.docs_per_shard < 1:
        p.error("--docs-per-shard must be >= 1, got %d" % args.docs_per_shard)
    if args.first_shard < 0:
        p.error("--first-shard must be >= 0, got %d" % args.first_shard)
    if not os.path.isdir(args.images):
        p.error("--images: no such folder: %s" % args.images)
    return args


def expand_inputs(inputs):
    """Files in the order given; a folder contributes its .jsonl / .zip files sorted."""
    files = []
    for path in inputs:
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.endswith((".jsonl", ".zip")))
            files.extend(os.path.join(path, n) for n in names)
        elif os.path.isfile(path):
            files.append(path)
        else:
            sys.exit("mmc4_to_shards: no such input file or folder: %s" % path)
    return files


def document_lines(path):
    """Yields (where, line bytes) for every line of a .jsonl file or of the .jsonl members of a .zip."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for name in sorted(n for n in z.namelist() if n.endswith(".jsonl")):
                with z.open(name) as f:
                    for i, line in enumerate(f, 1):
                        yield "%s:%s:%d" % (path, name, i), line
    else:
        with open(path, "rb") as f:
            for i, line in enumerate(f, 1):
                yield "%s:%d" % (path, i), line


def read_image(images_dir, name):
    """The image file's bytes, or None when it was not downloaded (or the name is unsafe)."""
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        return None
    try:
        with open(os.path.join(images_dir, name), "rb") as f:
            return f.read()
    except OSError:
        return None


def embed_images(doc, images_dir, stats):
    """Adds image_base64 to each image_info entry; drops entries (and their
    similarity_matrix rows) whose image is missing."""
    infos = doc.get("image_info") or []
    sims = doc.get("similarity_matrix")
    has_rows = isinstance(sims, list) and len(sims) == len(infos)
    kept_infos, kept_rows = [], []
    for i, info in enumerate(infos):
        data = read_image(images_dir, info.get("image_name") if isinstance(info, dict) else None)
        if data is None:
            stats["images_missing"] += 1
            continue
        info["image_base64"] = base64.b64encode(data).decode("ascii")
        kept_infos.append(info)
        if has_rows:
            kept_rows.append(sims[i])
        stats["images_embedded"] += 1
    doc["image_info"] = kept_infos
    if has_rows:
        doc["similarity_matrix"] = kept_rows
    return len(kept_infos)


class ShardWriter:
    """Writes documents into %09d.tar files of at most per_shard members each
    (a shard is written under a temporary name and renamed when complete)."""

    def __init__(self, out_dir, per_shard, first_shard):
        self.out_dir, self.per_shard, self.next_shard = out_dir, per_shard, first_shard
        self.tar, self.count, self.shards = None, 0, 0
        os.makedirs(out_dir, exist_ok=True)

    def _path(self):
        return os.path.join(self.out_dir, "%09d.tar" % self.next_shard)

    def add(self, key, doc):
        if self.tar is None:
            self.tar = tarfile.open(self._path() + ".tmp", "w", format=tarfile.PAX_FORMAT)
        data = json.dumps(doc).encode("utf-8")
        info = tarfile.TarInfo(key + ".json")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        self.tar.addfile(info, io.BytesIO(data))
        self.count += 1
        if self.count == self.per_shard:
            self.close()

    def close(self):
        if self.tar is None:
            return
        self.tar.close()
        os.replace(self._path() + ".tmp", self._path())
        self.tar, self.count = None, 0
        self.next_shard += 1
        self.shards += 1


def convert(args):
    stats = dict(lines=0, bad_lines=0, docs_written=0, docs_imageless_dropped=0, docs_imageless_kept=0,
                 images_embedded=0, images_missing=0)
    writer = ShardWriter(args.out, args.docs_per_shard, args.first_shard)
    for path in expand_inputs(args.inputs):
        for where, line in document_lines(path):
            if not line.strip():
                continue
            stats["lines"] += 1
            try:
                doc = json.loads(line)
                if not isinstance(doc, dict) or not isinstance(doc.get("text_list"), list):
                    raise ValueError("not an object with a text_list")
                if not isinstance(doc.get("image_info", []), list):
                    raise ValueError("image_info is not a list")
            except ValueError as e:
                stats["bad_lines"] += 1
                print("mmc4_to_shards: skipping %s: %s" % (where, e), file=sys.stderr)
                continue
            if embed_images(doc, args.images, stats) == 0:
                if not args.keep_imageless:
                    stats["docs_imageless_dropped"] += 1
                    continue
                stats["docs_imageless_kept"] += 1
            writer.add("%012d" % (stats["lines"] - 1), doc)
            stats["docs_written"] += 1
    writer.close()
    return stats, writer.shards


def main(argv):
    args = parse_args(argv)
    stats, shards = convert(args)
    print("mmc4_to_shards: %d lines (%d malformed, skipped); %d documents written to %d shards in %s; "
          "%d images embedded, %d missing (dropped); documents with no image: %d dropped, %d kept"
          % (stats["lines"], stats["bad_lines"], stats["docs_written"], shards, args.out,
             stats["images_embedded"], stats["images_missing"], stats["docs_imageless_dropped"],
             stats["docs_imageless_kept"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
