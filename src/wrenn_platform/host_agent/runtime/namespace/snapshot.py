"""Copying a capsule's overlay upper dir out as a snapshot layer, owners shifted back to 0-based.

The copy keeps overlayfs' whiteouts (0/0 character devices) and `trusted.overlay.*` xattrs
(opaque directories), so the layer works as a lower layer of later capsules.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .userns import UID_RANGE


def copy_upper(upper: Path, dest: Path, uid_base: int) -> None:
    os.sync()
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(upper), str(dest)], check=True, capture_output=True)

    def shift(path: str) -> None:
        st = os.lstat(path)
        uid = st.st_uid - uid_base if uid_base <= st.st_uid < uid_base + UID_RANGE else st.st_uid
        gid = st.st_gid - uid_base if uid_base <= st.st_gid < uid_base + UID_RANGE else st.st_gid
        if (uid, gid) != (st.st_uid, st.st_gid):
            mode = st.st_mode
            os.lchown(path, uid, gid)
            if not os.path.islink(path) and mode & 0o6000:
                os.chmod(path, mode & 0o7777)  # chown clears setuid/setgid bits

    shift(str(dest))
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            shift(os.path.join(dirpath, name))
