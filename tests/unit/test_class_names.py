"""One name, one class: a class name defined twice in the package (say a scheduler event and a wire
message both called ``SubmitRun``) makes every import site ambiguous to a reader and to grep."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import handoffd

PACKAGE = Path(handoffd.__file__).parent


def class_definitions(root: Path) -> dict[str, list[str]]:
    """Class name -> every ``path:line`` in ``root`` (recursively, nested classes too) defining it."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                found[node.name].append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def test_no_class_name_is_defined_twice_in_the_package() -> None:
    twice = {name: where for name, where in class_definitions(PACKAGE).items() if len(where) > 1}
    assert not twice, (
        "class names defined more than once (rename the less public one): "
        + "; ".join(f"{name} at {', '.join(where)}" for name, where in sorted(twice.items()))
    )


def test_the_check_finds_a_duplicate(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("class Ack:\n    pass\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    class Ack:\n        pass\n")
    assert class_definitions(pkg)["Ack"] == ["pkg/a.py:1", "pkg/sub/b.py:2"]
