"""Run a docs page's examples: its ```python blocks, in order, as one script in a fresh interpreter
(so its functions are ``__main__``'s and ship by value, as a user's script would)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def python_blocks(page: str, fence: str = "python") -> str:
    """The page's blocks fenced ```<fence> joined into one script (```py: Ray's, run apart)."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(rf"^```{fence}\n(.*?)^```", text, re.S | re.M)
    assert blocks, f"docs/{page} has no ```{fence} blocks"
    return "\n\n".join(blocks)


def run_page(
    page: str,
    tmp_path: Path,
    env: dict[str, str],
    timeout: float = 180,
    fence: str = "python",
    prefix: list[str] | None = None,
) -> str:
    """Run the page's examples (``prefix``: a command the interpreter runs under, e.g. a network
    namespace); return their output, or fail with it."""
    script = tmp_path / page.replace("/", "_").replace(".md", f"_{fence}.py")
    script.write_text(python_blocks(page, fence), encoding="utf-8")
    result = subprocess.run(
        [*(prefix or []), sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        cwd=str(tmp_path),
    )
    assert result.returncode == 0, (
        f"docs/{page} examples failed (rc {result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout
