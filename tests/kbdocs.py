"""Small real documents in every supported format, for the knowledge-base tests."""

from __future__ import annotations

from pathlib import Path

from kvgraph.testing.pdf import write_pdf

COMPOST = """# Composting

## Greens and browns

A healthy compost pile mixes nitrogen-rich greens with carbon-rich browns.
Aim for roughly three parts browns to one part greens by volume.

## Turning

Turn the pile every two weeks to add oxygen. A pile that smells of ammonia has too many greens.
"""

TOWER = "The Eiffel Tower was completed in 1889 for the World's Fair in Paris. It is about 330 metres tall.\n"

BEES = """<html><head><title>Honeybees</title><script>var tracking = "ignore me";</script></head>
<body><nav>Home | About</nav><main><h1>Honeybees</h1>
<p>Worker bees perform a waggle dance to tell nest mates the direction and distance of flowers.</p>
<p>A queen can lay up to two thousand eggs per day in early summer.</p></main></body></html>"""


def make_docs(root: Path) -> Path:
    docs = root / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "compost.md").write_text(COMPOST)
    (docs / "tower.txt").write_text(TOWER)
    (docs / "sub" / "bees.html").write_text(BEES)
    write_pdf(
        docs / "network.pdf",
        [
            "Router setup. Change the default administrator password before connecting the router to the internet.",
            "Wi-Fi channels. On the 2.4 GHz band only channels 1, 6 and 11 do not overlap each other.",
        ],
        title="Home network handbook",
    )
    return docs
