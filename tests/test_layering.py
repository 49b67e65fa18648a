"""The import rules of docs/architecture.md, checked on the code's own imports.

The core stays pure: importing every module of clearing_core loads no Kafka or
Faust client (DESIGN section 2), and no core module reads the environment. The
folders are layers: a folder imports only folders below it (stages at one level
meet through records, never through each other's code), the services import the
core and never the other way round, nothing imports the CLI, and no module
imports itself back through others (no import cycle, lazy imports included).
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import clearing_core
from tests.conftest import REPO

FORBIDDEN = ("confluent_kafka", "faust", "aiokafka", "mode")
CORE = Path(clearing_core.__file__).parent

# Each folder (a package directly under clearing_core or clearing_services; "" is
# the package's own top-level modules) and its level: a folder imports only
# folders of a lower level, and its own. Docs: docs/architecture.md, "Import rules".
CORE_LEVELS = {
    "": 0,  # errors, money, ids, jit
    "encoding": 1,
    "refdata": 2,
    "netting": 2,
    "ingest": 3,
    "cycle": 3,
    "exports": 4,
    "operations": 4,
    "workload": 4,
}
SERVICE_LEVELS = {
    "": 0,  # settings
    "runtime": 1,
    "broker": 1,
    "chain": 1,
    "kafka": 2,
    "sources": 3,
    "ingest": 3,
    "netting": 3,
    "settlement": 3,
    "operations": 4,
    "process": 5,  # a worker put together: stages, and operations' lag monitor
    "cli": 6,
}
PACKAGES = {
    "clearing_core": (REPO / "src" / "clearing_core", CORE_LEVELS),
    "clearing_services": (REPO / "services" / "clearing_services", SERVICE_LEVELS),
}


Packages = dict[str, tuple[Path, dict[str, int]]]


def module_name(package: str, root: Path, path: Path) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(packages: Packages) -> dict[str, Path]:
    found = {}
    for package, (root, _) in packages.items():
        for path in sorted(root.rglob("*.py")):
            found[module_name(package, root, path)] = path
    return found


def imported(path: Path, known: dict[str, Path]) -> Iterator[tuple[int, str]]:
    """First-party modules ``path`` imports (anywhere in it: a lazy import is an
    import), resolved to the module where ``from package import name`` names one."""
    first_party = {name.split(".")[0] for name in known}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in known
                else node.module
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            if name.split(".")[0] in first_party:
                yield node.lineno, name


def folder_of(module: str, packages: Packages) -> tuple[str, str]:
    """(package, folder) of a module; folder "" for the package's top-level modules."""
    package, *rest = module.split(".")
    root, _ = packages[package]
    return package, rest[0] if rest and (root / rest[0]).is_dir() else ""


def upward_imports(packages: Packages) -> list[str]:
    """Every import of a folder at the same or a higher level, and of a service by the core."""
    known = modules(packages)
    offenders = []
    for name, path in known.items():
        package, folder = folder_of(name, packages)
        for line, target in imported(path, known):
            target_package, target_folder = folder_of(target, packages)
            if package == "clearing_core" and target_package != package:
                offenders.append(f"{name}:{line} imports {target}: the core imports no service")
                continue
            if target_package != package or target_folder == folder:
                continue
            levels = packages[package][1]
            if levels[target_folder] >= levels[folder]:
                offenders.append(
                    f"{name}:{line} imports {target}: {folder or 'top'} "
                    f"(level {levels[folder]}) may import only lower levels"
                )
    return offenders


def test_every_folder_has_a_level() -> None:
    for package, (root, levels) in PACKAGES.items():
        folders = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
        assert folders | {""} == set(levels), f"{package}: give each folder a level"


def test_folders_import_only_folders_below_them() -> None:
    assert upward_imports(PACKAGES) == []


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    """The rule fails on what it exists to refuse: a stage importing another stage of
    its own level, a lower folder importing a higher one, the core importing a service."""
    core, services = tmp_path / "clearing_core", tmp_path / "clearing_services"
    files = {
        core / "ingest" / "step.py": "from clearing_core.cycle import ledger\n",
        core / "cycle" / "ledger.py": "",
        core / "encoding" / "codec.py": "import clearing_core.ingest.step\n",
        core / "money.py": "from clearing_services.kafka import clients\n",
        services / "kafka" / "clients.py": "from clearing_services.cli import main\n",
        services / "cli" / "main.py": "from clearing_services.kafka import clients\n",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    found = upward_imports(
        {"clearing_core": (core, CORE_LEVELS), "clearing_services": (services, SERVICE_LEVELS)}
    )
    assert [line.split(" imports ")[0] for line in found] == [
        "clearing_core.encoding.codec:1",
        "clearing_core.ingest.step:1",
        "clearing_core.money:1",
        "clearing_services.kafka.clients:1",
    ]


def import_graph() -> dict[str, set[str]]:
    known = modules(PACKAGES)
    return {
        name: {target for _, target in imported(path, known) if target != name}
        for name, path in known.items()
    }


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (an import cycle each)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_strongly_connected_finds_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_src_and_services() -> None:
    graph = import_graph()
    # a package's __init__ hands on names of its own modules: not a cycle of code
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(f"{t}.")}
    assert strongly_connected(graph) == []


def test_no_import_cycle_in_bench() -> None:
    bench = REPO / "bench"
    scripts = {path.stem: path for path in bench.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for stem, path in scripts.items():
        graph[stem] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                graph[stem] |= {a.name for a in node.names if a.name in scripts}
            elif isinstance(node, ast.ImportFrom) and node.module in scripts:
                graph[stem].add(node.module)
    assert strongly_connected(graph) == []


def test_core_imports_no_streaming_client() -> None:
    names = sorted(m.name for m in pkgutil.walk_packages([str(CORE)], "clearing_core."))
    assert "clearing_core.encoding.codec" in names
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.strip() == ""


def test_core_reads_no_environment() -> None:
    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
                offenders.append(f"{path.relative_to(CORE)}:{node.lineno}")
    assert offenders == []


def cli_importers(root: Path) -> list[str]:
    """Every import of ``clearing_services.cli`` by a file under ``root`` outside the
    CLI's own folder (running the CLI, as tests and bench do in a subprocess, is fine)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if "clearing_services/cli/" in path.as_posix():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            if any(f"{name}.".startswith("clearing_services.cli.") for name in names):
                found.append(f"{path.relative_to(root).as_posix()}:{node.lineno}")
    return found


def test_the_cli_is_a_leaf() -> None:
    """What a command and another module both need lives below the CLI (the demo
    imported ``cli.produce`` for publishing events: now ``sources.publish``)."""
    assert [line for root in ("src", "services", "bench")
            for line in cli_importers(REPO / root)] == []  # fmt: skip


def test_a_cli_import_is_found(tmp_path: Path) -> None:
    files = {
        "clearing_services/operations/demo.py": "from clearing_services.cli.produce import x\n",
        "clearing_services/operations/lag.py": "from clearing_services import cli\n",
        "clearing_services/cli/main.py": "from clearing_services.cli.common import settings\n",
        "clearing_services/client.py": "import clearing_services.client_tools\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cli_importers(tmp_path) == [
        "clearing_services/operations/demo.py:1", "clearing_services/operations/lag.py:1",
    ]  # fmt: skip


def test_no_module_keeps_state_in_globals() -> None:
    """A module variable that functions rebind (``global``) is state every caller of the
    module shares unseen, set in an order nothing checks: the Kafka clients' connection
    profile and librdkafka log level were (now the settings' and the logger's)."""
    offenders = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for root in ("src", "services", "bench")
        for path in sorted((REPO / root).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Global)
    ]
    assert offenders == []
