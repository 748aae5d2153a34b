"""The repository's layout keeps its promises (docs/design.md, Repository map): every script
in benchmarks/ stands behind a claim a doc makes, every script a doc names exists, each
folder's index lists its files, links between docs resolve, and only models with a card
ship."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The docs that make claims: the README and docs/*.md (not the generated reports).
CLAIMS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Everything a reader follows: the above, the reports and the folder indexes.
READ = [
    *CLAIMS,
    *sorted((ROOT / "docs").glob("*/**/*.md")),
    *(ROOT / d / "README.md" for d in ("benchmarks", "research", "scripts")),
]
SCRIPT = re.compile(r"\b((?:benchmarks|research|scripts)/[\w.-]+\.(?:py|sh|yaml))\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _scripts(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).iterdir() if p.suffix in {".py", ".sh", ".yaml"})


@pytest.mark.parametrize("script", _scripts("benchmarks"), ids=lambda p: p.name)
def test_every_benchmark_is_cited_by_a_doc_and_indexed(script):
    name = f"benchmarks/{script.name}"
    assert any(name in doc.read_text() for doc in CLAIMS), f"no doc cites {name}"
    assert f"`{script.name}`" in (ROOT / "benchmarks" / "README.md").read_text()


@pytest.mark.parametrize("folder", ["research", "scripts"])
def test_every_research_script_and_tool_is_indexed(folder):
    index = (ROOT / folder / "README.md").read_text()
    missing = [p.name for p in _scripts(folder) if f"`{p.name}`" not in index]
    assert not missing, f"{folder}/README.md does not list {missing}"


def test_every_script_a_doc_names_exists():
    missing = {
        f"{doc.relative_to(ROOT)}: {name}"
        for doc in READ
        for name in SCRIPT.findall(doc.read_text())
        if not (ROOT / name).exists()
    }
    assert not missing, sorted(missing)


def test_links_between_docs_resolve():
    broken = []
    for doc in READ:
        for target in LINK.findall(doc.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor in the same file
            if not (doc.parent / target.split("#")[0]).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_no_experiments_folder_and_only_models_with_a_card_ship():
    assert not (ROOT / "experiments").exists()
    cards = (ROOT / "docs" / "models.md").read_text()
    weights = sorted((ROOT / "src" / "malleconv" / "weights").glob("*.safetensors"))
    assert weights
    for path in weights:
        assert f"\n## {path.stem}\n" in cards, f"{path.name} ships without a model card"
