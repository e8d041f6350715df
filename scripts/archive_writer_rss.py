"""Memory the archive writer adds to a process: its queue, buffer and copy grids.

Hands ``--rows`` rows of ``--channels`` channels to an :class:`vigil.archive.ArchiveWriter` in
100-row blocks and prints the peak RSS before and after::

    python scripts/archive_writer_rss.py --channels 10000 --rows 4000 [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile

import numpy as np

from vigil.archive import ArchiveWriter


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--channels", type=int, default=10_000)
    p.add_argument("--rows", type=int, default=4_000)
    p.add_argument("--dir", default=None, help="where to write (default: the system's temporary folder)")
    a = p.parse_args()
    root = tempfile.mkdtemp(prefix="vigil-archive-rss-", dir=a.dir)
    values = np.random.default_rng(0).normal(size=(100, a.channels))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with ArchiveWriter(root, [f"c{j}" for j in range(a.channels)]) as writer:
        for start in range(0, a.rows, 100):
            writer.append(1_764_460_800.0 + np.arange(start, start + 100.0), values)
        writer.flush(timeout=None)
        cpu = writer.cpu_s
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {before:.0f} MB before, {after:.0f} MB after (+{after - before:.0f} MB); "
          f"writer CPU {cpu / (a.rows * a.channels) * 1e9:.1f} ns per sample")  # fmt: skip
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
