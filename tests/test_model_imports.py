"""The contract between the packages: s2vmodel uses s2vdata only through its clip API and its signal measures."""

from __future__ import annotations

import ast
from pathlib import Path

import s2vmodel

ALLOWED = ("s2vdata.clips", "s2vdata.checks")  # the clip API, and the measures shared by curation and evaluation


def s2vdata_imports(path: Path) -> list[tuple[int, str]]:
    """Returns (line, module) of every s2vdata module a file imports, at any depth (functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "s2vdata"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "s2vdata":
            # `from s2vdata import media` imports the module s2vdata.media
            found += [
                (node.lineno, f"{node.module}.{alias.name}" if node.module == "s2vdata" else node.module) for alias in node.names
            ]
    return found


def allowed(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in ALLOWED)


def test_s2vmodel_imports_from_s2vdata_only_the_clip_api_and_the_checks():
    files = sorted(Path(s2vmodel.__file__).parent.rglob("*.py"))
    assert len(files) > 10
    used = {(f.name, line, module) for f in files for line, module in s2vdata_imports(f)}
    assert any(module == "s2vdata.clips" for _, _, module in used)  # the check sees the imports it is about
    bad = sorted((name, line, module) for name, line, module in used if not allowed(module))
    assert not bad, f"s2vmodel may import only {ALLOWED} from s2vdata: {bad}"


def test_the_check_catches_every_form_of_import(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import s2vdata.media\nfrom s2vdata import shards\nfrom s2vdata.clips import CLIP\n"
        "def f():\n    from s2vdata.manifest import read_manifest\n"
    )
    modules = [m for _, m in s2vdata_imports(source)]
    assert modules == ["s2vdata.media", "s2vdata.shards", "s2vdata.clips", "s2vdata.manifest"]
    assert [allowed(m) for m in modules] == [False, False, True, False]
