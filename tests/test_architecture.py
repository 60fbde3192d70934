"""docs/architecture.md stays true: it names every module under src/voiceflex, and no module that is gone."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "voiceflex"


def _listed() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    return set(re.findall(r"^- `([\w/]+\.py)`:", text, flags=re.M))


def test_every_module_appears_in_the_architecture_page():
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    assert modules, "no modules found: the path to src/voiceflex is wrong"
    missing = sorted(modules - _listed())
    assert not missing, f"docs/architecture.md does not list: {', '.join(missing)}"


def test_the_architecture_page_lists_no_module_that_is_gone():
    gone = sorted(m for m in _listed() if not (PACKAGE / m).is_file())
    assert not gone, f"docs/architecture.md lists modules that do not exist: {', '.join(gone)}"
