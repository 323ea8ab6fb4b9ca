"""The user-namespace helper is safe from many threads at once (an agent creates capsules
concurrently), and maps exactly the capsule's private range."""

from __future__ import annotations

import concurrent.futures
import os

import pytest

from wrenn_platform.host_agent.runtime.namespace import userns

pytestmark = pytest.mark.root


def test_user_namespaces_from_many_threads_at_once() -> None:
    bases = [userns.host_uid_base(i) for i in range(64)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(userns.create_userns, base) for base in bases]
        # A fork inheriting another helper's pipe ends used to hang here forever.
        fds = [future.result(timeout=30) for future in futures]
    try:
        inodes = {os.fstat(fd).st_ino for fd in fds}
        assert len(inodes) == len(bases)
    finally:
        for fd in fds:
            os.close(fd)
    assert userns.host_uid_base(1) - userns.host_uid_base(0) == 65536
    assert userns.host_uid_base(16383) + 65536 <= 2**31
