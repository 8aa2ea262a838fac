"""The README is a start: short, the two commands as they are, links that lead somewhere, and no
snippet of its own left untested (each Python snippet is one of the docs', which test_docs.py
runs; its `quicknets ...` commands are checked there too)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_the_readme_is_short():
    assert len(README.read_text().splitlines()) <= 250


def test_the_two_commands_are_there_as_they_are():
    text = README.read_text()
    assert "```sh\nbash scripts/setup.sh && .venv/bin/quicknets train\n```" in text
    assert "```sh\nbash scripts/test.sh\n```" in text


def test_each_python_snippet_is_one_the_docs_run():
    docs = "".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.M | re.S)
    assert blocks  # the story
    for block in blocks:
        assert f"```python\n{block}```" in docs, block.splitlines()[0]


def test_every_relative_link_leads_to_a_file():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if "://" not in link]
    assert any(link.startswith("docs/") for link in local)
    for link in local:
        assert (ROOT / link).exists(), link


def test_the_layout_and_where_a_change_goes_are_found_from_here():
    text = README.read_text()
    assert "\n## Layout\n" in text and "(docs/architecture.md)" in text
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    assert "\n## Layout\n" in architecture and "\n## Where a change goes\n" in architecture
