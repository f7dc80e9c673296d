#!/usr/bin/env python3
"""Writes the tar shard fixtures of tests/test_shards.c with Python's tarfile
(the writer webdataset uses), so aimc's reader is checked against files it
did not write itself.

  tests/fixtures/shards/pax.tar       PAX format (tarfile's default): a global
                                      'g' header, a '././@PaxHeader' before
                                      every member (fractional mtime), path
                                      records for a long and a non-ASCII name
  tests/fixtures/shards/gnu.tar       GNU format: '././@LongLink' 'L' entries
  tests/fixtures/shards/ustar.tar.gz  ustar format (long name via the prefix
                                      field), gzip-compressed
  tests/fixtures/shards/pax.tar.zst   pax.tar compressed with the zstd tool
  tests/fixtures/shards/expected.json per fixture, the samples a webdataset
                                      reader yields: key, then each member's
                                      extension, size and CRC-32, in tar order

Usage: python3 scripts/make_shard_fixtures.py  (needs the `zstd` program)
"""
import gzip
import io
import json
import os
import random
import subprocess
import tarfile
import zlib

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "shards")
LONG_KEY = "deep/" + "d" * 60 + "/" + "k" * 50  # name > 100 bytes; fits ustar's prefix + name


def members():
    """(name, bytes) in archive order; None marks non-file entries added separately."""
    rng = random.Random(1234)
    blob = lambda n: bytes(rng.getrandbits(8) for _ in range(n))
    return [
        ("s000.txt", b"a red circle"),
        ("s000.jpg", blob(700)),
        ("s000.json", b""),  # zero-byte member
        ("DIR", "dir/"),
        ("dir/s001.seg.0.png", blob(513)),
        ("dir/s001.txt", blob(512)),
        ("SYMLINK", "link.txt"),
        (LONG_KEY + ".txt", b"long name"),
        (LONG_KEY + ".cls", b"7"),
        ("README", b"not a sample member: no dot"),
        ("caf\u00e9_\u00fc.txt", "caf\u00e9 \u00fc".encode()),
        ("s003.bin", blob(1)),
        ("s004.cls", b"3"),
        ("s004.txt", (b"the quick brown fox " * 150)[:3000]),
    ]


def write_tar(fileobj, mode, fmt, pax_headers=None):
    with tarfile.open(fileobj=fileobj, mode=mode, format=fmt, pax_headers=pax_headers or {}) as t:
        for i, (name, data) in enumerate(members()):
            if name == "DIR":
                ti = tarfile.TarInfo(data)
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                t.addfile(ti)
                continue
            if name == "SYMLINK":
                ti = tarfile.TarInfo(data)
                ti.type = tarfile.SYMTYPE
                ti.linkname = "s000.txt"
                t.addfile(ti)
                continue
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            # webdataset sets a float time.time(): PAX then records the fraction
            ti.mtime = 1700000000.25 + i if fmt == tarfile.PAX_FORMAT else 1700000000 + i
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))


def expected_samples():
    samples = []
    for name, data in members():
        if name in ("DIR", "SYMLINK") or name == "README":
            continue
        base = name.rsplit("/", 1)[-1]
        dot = name.index(".", len(name) - len(base))
        key, ext = name[:dot], name[dot + 1:]
        if not samples or samples[-1]["key"] != key:
            samples.append({"key": key, "members": []})
        samples[-1]["members"].append({"ext": ext, "size": len(data), "crc32": zlib.crc32(data)})
    return samples


def main():
    os.makedirs(OUT, exist_ok=True)
    files = {}
    buf = io.BytesIO()
    write_tar(buf, "w", tarfile.PAX_FORMAT, {"comment": "aimc shard fixture"})
    files["pax.tar"] = buf.getvalue()
    buf = io.BytesIO()
    write_tar(buf, "w", tarfile.GNU_FORMAT)
    files["gnu.tar"] = buf.getvalue()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:  # what "w:gz" does, minus the timestamp
        write_tar(gz, "w", tarfile.USTAR_FORMAT)
    files["ustar.tar.gz"] = buf.getvalue()
    files["pax.tar.zst"] = subprocess.run(["zstd", "-q", "-19", "-c"], input=files["pax.tar"],
                                          stdout=subprocess.PIPE, check=True).stdout
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    expected = {name: expected_samples() for name in files}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")
    # the archives must read back in Python too
    for name in files:
        if name.endswith(".zst"):  # tarfile reads zstd only from Python 3.14 on
            continue
        with tarfile.open(os.path.join(OUT, name)) as t:
            assert sum(m.isfile() for m in t.getmembers()) == len(members()) - 2, name
    print("wrote", ", ".join(f"{n} ({len(d)} bytes)" for n, d in files.items()))


if __name__ == "__main__":
    main()
