"""The README's "Use it from Python" example, run as written with the published client."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .published_client import PublishedClient

pytestmark = pytest.mark.root

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python_example() -> str:
    section = re.search(r"<!-- section:python -->(.*?)<!-- /section:python -->", README.read_text(), re.S)
    assert section, "README has no 'Use it from Python' section"
    example = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    assert example, "the section has no python example"
    return example.group(1)


def test_the_readme_example_runs_as_written(client: PublishedClient) -> None:
    example = readme_python_example()
    assert len(example.strip().splitlines()) <= 10
    assert client.output_of(example) == "42\nhello from Python\n1\n2\n3\n"
