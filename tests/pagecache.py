"""What the page cache holds of a file, for the tests of reading ahead (Linux: ``mincore``).

A plain module (no package-relative imports), imported as ``from pagecache import resident``.
"""

from __future__ import annotations

import os
import threading

import pytest


def resident(path) -> float:
    """Share of ``path``'s pages in the page cache."""
    pages = resident_pages(path)
    return sum(pages) / len(pages) if pages else 1.0


def resident_pages(path) -> list[bool]:
    """Which of ``path``'s pages are in the page cache (mincore over a shared read-only
    mapping)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = os.path.getsize(path)
    pages = -(-size // mmap.PAGESIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            vec = (ctypes.c_ubyte * pages)()
            assert libc.mincore(addr, size, vec) == 0, ctypes.get_errno()
            return [bool(v & 1) for v in vec]
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def evict(path) -> None:
    """Drop ``path``'s clean pages from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages stay: write them first
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def skip_unless_page_cache_shows(paths) -> None:
    """Skip unless ``paths`` (just evicted) are out of memory, and a read of the first brings it
    in and an eviction takes it out again: not so on tmpfs, which keeps its pages, nor on ZFS,
    whose cache is its own."""
    if max(resident(p) for p in paths) > 0:
        pytest.skip("this file system keeps its pages in memory: nothing to read ahead")
    with open(paths[0], "rb") as f:
        while f.read(1 << 20):
            pass
    seen = resident(paths[0])
    evict(paths[0])
    if seen < 1.0 or resident(paths[0]) > 0:
        pytest.skip("this file system's cache is not the page cache that mincore sees")


def wait_seen_resident(paths, timeout: float = 30.0) -> list[float]:
    """Wait (at most ``timeout`` seconds) until every page of ``paths`` has been seen in the
    page cache; return the share of each file's pages seen there.

    A page counts once it has been seen, even if it is gone at a later look: pages read ahead
    that nothing has used yet are the first the kernel reclaims when memory runs short (a whole
    test suite beside other work), so "all in memory at one instant" is not what reading ahead
    promises, "all read" is.
    """
    seen = [resident_pages(p) for p in paths]
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if all(all(s) for s in seen):
            break
        done.wait(0.01)
        seen = [[a or b for a, b in zip(s, resident_pages(p))] for s, p in zip(seen, paths)]
    return [sum(s) / len(s) if s else 1.0 for s in seen]
