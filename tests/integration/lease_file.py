#!/usr/bin/python3
"""Write a pgvigil lease file (src/common/lease_file.h) as the agent would, for tests of the
commit guard: lease_file.py PATH WHEN [--gen N] [--replace]
WHEN: 'none' (no deadline), 'past' (ran out 5 s ago), or +MS / -MS from now (CLOCK_BOOTTIME).
--gen: the lease generation (default 1). --replace writes a new file and renames it over PATH
(a new inode), instead of storing in place.
'show PATH' prints the deadline's distance from now in ms ('none' for no deadline)."""
import os
import struct
import sys
import time

MAGIC = b"PGVIGIL\x02"


def now_ms():
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * 1000)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "show":
        with open(sys.argv[2], "rb") as f:
            data = f.read(24)
        if data[:8] != MAGIC:
            sys.exit("bad magic")
        (d,) = struct.unpack("<q", data[8:16])
        print("none" if d == 0 else d - now_ms())
        return
    path, when = sys.argv[1], sys.argv[2]
    gen = 1
    if "--gen" in sys.argv[3:]:
        gen = int(sys.argv[sys.argv.index("--gen") + 1])
    if when == "none":
        d = 0
    elif when == "past":
        d = now_ms() - 5000
    else:
        d = now_ms() + int(when)
    data = MAGIC + struct.pack("<qQ", d, gen)
    if "--replace" in sys.argv[3:]:
        tmp = path + ".new"
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, data, 0)
    os.close(fd)


main()
