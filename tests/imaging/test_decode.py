"""The filter's image decode: under the scrape's pixel cap, and memory errors not swallowed."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

from PIL import Image

from alignpipe.imaging.decode import decode_image_facts
from alignpipe.imaging.phash import phash


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height)).save(out, "PNG")  # zeros: a tiny file of many pixels
    return out.getvalue()


def test_small_image_is_decoded_and_hashed():
    data = _png(40, 30)
    assert decode_image_facts(data, max_pixels=1200) == (True, 40, 30, phash(Image.open(io.BytesIO(data))))


def test_image_over_the_cap_keeps_its_size_but_is_not_decoded():
    assert decode_image_facts(_png(40, 30), max_pixels=1199) == (False, 40, 30, None)


def test_broken_files_are_undecodable():
    data = _png(40, 30)
    assert decode_image_facts(b"", 0) == (False, 0, 0, None)
    assert decode_image_facts(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 0) == (False, 0, 0, None)
    assert decode_image_facts(data[: len(data) // 2], 0) == (False, 0, 0, None)


_CHILD = textwrap.dedent(
    """
    import io, os, resource, sys
    from PIL import Image
    from alignpipe.imaging.decode import decode_image_facts

    buf = io.BytesIO()
    Image.new("L", (9000, 9000)).save(buf, "PNG")  # 81 M pixels in ~80 kB
    data = buf.getvalue()
    mode = sys.argv[1]
    if mode == "capped":
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(decode_image_facts(data, 50_000_000))
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    else:  # the process may grow 40 MiB more: the 81 MB decode cannot fit
        size = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + 40 * 2**20, resource.RLIM_INFINITY))
        try:
            print(decode_image_facts(data, 0))
        except MemoryError:
            print("MemoryError")
    """
)


def _child(mode: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n")


def test_decompression_bomb_under_the_cap_costs_no_pixel_memory():
    facts, grown_mib, _ = _child("capped")
    assert facts == "(False, 9000, 9000, None)"
    assert int(grown_mib) < 20  # decoding it would take 81 MB


def test_memory_errors_propagate_instead_of_reading_as_undecodable():
    assert _child("limited")[0] == "MemoryError"
