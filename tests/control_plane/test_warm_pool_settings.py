"""The warm pool's settings: sizes per pool key as `WRENN_WARM_POOL_SIZE` and `WRENN_WARM_POOLS`
write them, and a clear refusal of what cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from wrenn_platform.cli.main import app as cli
from wrenn_platform.control_plane.settings import Settings
from wrenn_platform.wire.warm_pool import DEFAULT_POOL_KEY, PoolKey, PoolSpecError, pool_sizes


def test_the_default_request_has_a_pool_of_four_and_zero_disables_it(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).warm_pool_sizes() == {PoolKey("minimal", 1, 512, 5120): 4}
    assert Settings(data_dir=tmp_path, warm_pool_size=0).warm_pool_sizes() == {}


def test_more_pools_by_key() -> None:
    assert pool_sizes(2, "minimal:2:1024:5120=3, python:1:512:2048=1,minimal:4:4096:5120=0") == {
        DEFAULT_POOL_KEY: 2, PoolKey("minimal", 2, 1024, 5120): 3, PoolKey("python", 1, 512, 2048): 1}
    assert pool_sizes(2, "minimal:1:512:5120=5") == {DEFAULT_POOL_KEY: 5}  # the list overrides the default's size


@pytest.mark.parametrize(("spec", "says"), [
    ("minimal:1:512=2", "template:vcpus:memory_mb:disk_size_mb"),
    ("minimal:1:512:5120", "=N"),
    ("minimal:one:512:5120=1", "integers"),
    ("minimal:1:512:5120=x", "not an integer"),
    ("minimal:1:512:5120=-1", "negative"),
    ("minimal:0:512:5120=1", "vcpus >= 1"),
])
def test_an_unreadable_pool_is_refused_with_what_is_wrong(tmp_path: Path, spec: str, says: str) -> None:
    with pytest.raises(PoolSpecError, match=says):
        pool_sizes(1, spec)
    with pytest.raises(ValidationError, match=says):
        Settings(data_dir=tmp_path, warm_pools=spec)


def test_wrenn_agent_refuses_an_unreadable_pool_before_doing_anything(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["agent", "--data-dir", str(tmp_path / "data"), "--warm-pools", "minimal:1=2"])
    assert result.exit_code == 2, result.output
    assert "--warm-pools" in result.output and "template:vcpus:memory_mb:disk_size_mb" in result.output
    assert not (tmp_path / "data").exists()
