"""The documented Python API: `import facestore` exports it, and the README's example runs."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import facestore
from tests.support.helpers import encode, face_image, make_app_db

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    marker = text.index("<!-- api-example")
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, marker)
    assert match is not None, "the README's API example is missing"
    return match.group(1)


def test_every_exported_name_resolves_and_is_listed() -> None:
    for name in facestore.__all__:
        assert getattr(facestore, name) is not None, name
    assert set(facestore.__all__) <= set(dir(facestore))
    assert issubclass(facestore.SpaceMismatchError, facestore.ConfigurationError)
    assert (Path(facestore.__file__).parent / "py.typed").is_file()


def test_import_facestore_loads_no_heavy_dependency() -> None:
    code = "import sys, facestore; print(sorted({'torch', 'sklearn', 'sqlalchemy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_readme_example_runs(tmp_path: Path) -> None:
    """As written: the dlib backbone, offline, no weights file anywhere."""
    make_app_db(tmp_path / "photos.db", people=3, per_person=4)
    (tmp_path / "new.jpg").write_bytes(encode(face_image(1, 30)))
    (tmp_path / "example.py").write_text(readme_example())
    run = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TORCH_HOME": str(tmp_path / "torch-home")},
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "embedded 12"
    assert lines[1].startswith("published ") and "accuracy" in lines[1]
    assert lines[2].startswith("new.jpg ")


def test_the_type_checkers_names_are_the_exports() -> None:
    """The API is spelled once for Python (_EXPORTS: name -> module, which __all__
    follows) and once for type checkers (the TYPE_CHECKING imports): they must agree."""
    tree = ast.parse(Path(facestore.__file__).read_text())
    checked = {
        (alias.name, node.module)
        for block in tree.body
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert checked == {(name, module) for name, module in facestore._EXPORTS.items()}
    assert facestore.__all__ == ["__version__", *facestore._EXPORTS]
