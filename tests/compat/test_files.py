"""`capsule.files` — read, write, list, make_dir, remove, exists, streaming upload and download of
a large file — from the published client."""

from __future__ import annotations

import pytest

from .published_client import PublishedClient

pytestmark = pytest.mark.root

LARGE_MIB = 64


def test_write_read_list_mkdir_exists_remove(client: PublishedClient) -> None:
    seen = client.run("""
        from wrenn import Capsule, WrennNotFoundError

        with Capsule(wait=True) as capsule:
            files = capsule.files
            files.write("/tmp/work/deep/text.txt", "héllo\\n")
            files.write("/tmp/work/blob.bin", bytes(range(256)))
            made = files.make_dir("/tmp/work/sub/dir")
            again = files.make_dir("/tmp/work/sub/dir")
            entries = {e.name: (e.type, e.size, e.path) for e in files.list("/tmp/work")}
            deep = sorted(e.path for e in files.list("/tmp/work", depth=3))
            exists = [files.exists(p) for p in ("/tmp/work/blob.bin", "/tmp/work/nope", "/tmp/nowhere/x")]
            text = files.read("/tmp/work/deep/text.txt")
            blob = files.read_bytes("/tmp/work/blob.bin")
            files.remove("/tmp/work/deep")
            gone = files.exists("/tmp/work/deep")
            errors = []
            for call in (lambda: files.read("/tmp/work/missing"), lambda: files.list("/tmp/missing-dir")):
                try:
                    call()
                except WrennNotFoundError as exc:
                    errors.append(exc.status_code)
            emit(made=(made.name, made.type, made.path), again=(again.name, again.type), entries=entries,
                 deep=deep, exists=exists, text=text, blob_ok=blob == bytes(range(256)), gone=gone, errors=errors)
    """)
    assert seen["made"] == ["dir", "directory", "/tmp/work/sub/dir"]
    assert seen["again"] == ["dir", "directory"]  # make_dir is idempotent
    assert seen["entries"]["blob.bin"] == ["file", 256, "/tmp/work/blob.bin"]
    assert seen["entries"]["deep"][0] == "directory" and seen["entries"]["sub"][0] == "directory"
    assert "/tmp/work/deep/text.txt" in seen["deep"] and "/tmp/work/sub/dir" in seen["deep"]
    assert seen["exists"] == [True, False, False]
    assert seen["text"] == "héllo\n"
    assert seen["blob_ok"] is True
    assert seen["gone"] is False
    assert seen["errors"] == [404, 404]


def test_streaming_upload_and_download_of_a_large_file(client: PublishedClient) -> None:
    seen = client.run(f"""
        import hashlib
        from wrenn import Capsule

        MIB = 1024 * 1024
        sent = hashlib.sha256()

        def chunks():
            for i in range({LARGE_MIB}):
                chunk = hashlib.sha256(str(i).encode()).digest() * (MIB // 32)
                sent.update(chunk)
                yield chunk

        with Capsule(wait=True) as capsule:
            capsule.files.upload_stream("/tmp/large.bin", chunks())
            inside = capsule.commands.run("sha256sum /tmp/large.bin; stat -c %s /tmp/large.bin", timeout=120).stdout
            got = hashlib.sha256()
            size = 0
            pieces = 0
            for piece in capsule.files.download_stream("/tmp/large.bin"):
                got.update(piece)
                size += len(piece)
                pieces += 1
            emit(sent=sent.hexdigest(), inside=inside.split(), got=got.hexdigest(), size=size, pieces=pieces)
    """, timeout=600)
    assert seen["inside"] == [seen["sent"], "/tmp/large.bin", str(LARGE_MIB * 1024 * 1024)]
    assert seen["got"] == seen["sent"]
    assert seen["size"] == LARGE_MIB * 1024 * 1024
    assert seen["pieces"] > 1  # it came in chunks, not as one body
