"""docs/delivery.md: its example record is valid, and its Python examples at least compile."""

from __future__ import annotations

import json
import re
from pathlib import Path

from flows.schemas import validate
from flows.sink_urls import parse_sink_url

DOC = Path(__file__).resolve().parents[2] / "docs" / "delivery.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_the_example_record_is_valid_against_its_schema():
    (example,) = blocks("json")
    validate(json.loads(example))


def test_the_python_examples_compile():
    code = blocks("python")
    assert len(code) >= 5  # validation, file, ws, redis, nats, kafka
    for i, src in enumerate(code):
        compile(src, f"{DOC.name}:python-block-{i}", "exec")


def test_every_sink_url_in_the_docs_parses():
    text = DOC.read_text()
    urls = set(re.findall(r"(?:redis|nats|ws|kafka)://127\.0\.0\.1:\d+[^\s\"'`)\]]*", text))
    urls |= set(re.findall(r"file:///[^\s\"'`)\]]+", text))
    assert len(urls) >= 5
    for url in urls:
        url = url.rstrip(":,.")
        if "topics=" in url:  # a websocket client's URL, not a sink's
            continue
        parse_sink_url(url)
