"""The documentation site (mkdocs.yml): ``mkdocs build --strict`` succeeds, with the README as the home
page and a page for every docs/*.md in the navigation; a broken link fails the strict build."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # mkdocs-material's banner about its successor
    )


def test_the_site_builds_strictly_with_a_page_per_doc(tmp_path: Path) -> None:
    site = tmp_path / "site"
    proc = build(REPO / "mkdocs.yml", site)
    assert proc.returncode == 0, proc.stderr
    pages = sorted(p.stem for p in DOCS.glob("*.md") if p.name != "index.md")
    assert len(pages) >= 15
    for name in pages:
        assert (site / name / "index.html").is_file(), f"docs/{name}.md has no page in the site"
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [name for name in pages if not re.search(rf":\s*{re.escape(name)}\.md\s*$", nav, re.MULTILINE)]
    assert not missing, f"pages not in mkdocs.yml's nav: {missing}"
    home = (site / "index.html").read_text(encoding="utf-8")
    readme_title = next(
        line[3:] for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith("## ")
    )
    assert readme_title in home, "the home page does not show the README"
    assert 'src="images/server-chat.png"' in home  # the README's image, its path rewritten for docs/
    assert (site / "images" / "server-chat.png").is_file()


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(REPO / "README.md", copy / "README.md")
    shutil.copy(REPO / "mkdocs.yml", copy / "mkdocs.yml")
    filters = copy / "docs" / "filters.md"
    filters.write_text(filters.read_text(encoding="utf-8") + "\nSee [the missing page](no-such-page.md).\n")
    proc = build(copy / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode != 0
    assert "no-such-page.md" in proc.stderr
