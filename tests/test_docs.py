"""The examples in docs/refdata.md and docs/pricing.md stay true, and the code the
docs name exists: a module moved or renamed leaves no page pointing at nothing."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

from clearing_core.refdata import load_refdata
from tests.conftest import REPO

DOCS = REPO / "docs"


def _blocks(name: str, language: str) -> list[str]:
    text = (DOCS / name).read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_refdata_example_loads() -> None:
    example = _blocks("refdata.md", "yaml")[0]
    ref = load_refdata(example)
    assert ref.version == "example-2025.06"
    assert ref.cycle_seconds_for("CNH") == 30
    assert ref.cap_minor("DC-SHENZHEN-01", "CNH") == 5_000_000
    assert ref.contracts["PPA-CN-0001"].valid_from == 1_704_038_400_000  # +08:00 midnight
    assert not ref.participants["LESSOR-HK-01"].active


def test_pricing_example_runs() -> None:
    (example,) = _blocks("pricing.md", "python")
    exec(compile(example, "docs/pricing.md", "exec"), {})


# Where the code lives; what a page names in backticks is looked for here.
CODE_ROOTS = ("src", "services", "bench", "tests", "infra")
PY_FILE = re.compile(r"[\w./-]*\w\.py\b")  # `netting/worker.py`, `services/.../lag.py`
DOTTED = re.compile(r"\bclearing_(?:core|services)(?:\.\w+)+")  # module, then attributes


def _pages() -> list[Path]:
    return [*sorted(DOCS.glob("*.md")), REPO / "README.md"]


def _quoted(page: Path) -> list[str]:
    return re.findall(r"`([^`\n]+)`", page.read_text(encoding="utf-8"))


def _python_files() -> set[str]:
    return {
        p.relative_to(REPO).as_posix() for root in CODE_ROOTS for p in (REPO / root).rglob("*.py")
    }


def file_named(ref: str, files: set[str]) -> bool:
    """A file whose path ends with ``ref`` (after any ``...`` that stands for folders)."""
    tail = ref.split("...")[-1].lstrip("/")
    return any(name == tail or name.endswith(f"/{tail}") for name in files)


def dotted_name_found(ref: str) -> bool:
    """The longest importable prefix of ``ref``, then each further part an attribute."""
    parts = ref.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: ModuleType | object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def test_files_and_modules_the_docs_name_exist() -> None:
    files = _python_files()
    missing = [
        f"{page.name}: {ref}"
        for page in _pages()
        for quoted in _quoted(page)
        for ref in [*PY_FILE.findall(quoted), *DOTTED.findall(quoted)]
        if not ref.startswith("../")
        and not (file_named(ref, files) if ref.endswith(".py") else dotted_name_found(ref))
    ]
    assert not missing, "the docs name code that is not there:\n" + "\n".join(missing)


def test_the_reference_check_catches_a_moved_module() -> None:
    files = {"services/clearing_services/netting/worker.py"}
    assert file_named("netting/worker.py", files)
    assert file_named("services/.../netting/worker.py", files)
    assert not file_named("netting_worker.py", files)
    assert dotted_name_found("clearing_core.ingest.stage.process_batch")
    assert not dotted_name_found("clearing_core.ingest.stage.no_such_step")
    assert not dotted_name_found("clearing_core.fast_lane")
