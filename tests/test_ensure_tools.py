"""infra/ensure-tools.sh, which ``make test`` runs first: a tool the tests need is
left alone when present, installed with apt-get as root or through ``sudo -n``
when missing, and otherwise the run stops at once with one line naming the
packages. The script runs on a PATH of its own with fake ``id``, ``sudo`` and
``apt-get`` that record their arguments, so nothing on this machine is
installed and the tools this machine has are hidden."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "infra" / "ensure-tools.sh"
BASH = shutil.which("bash") or "/bin/bash"
TOOL_LINE = re.compile(r'^\s*"(\S+) (\S+)"', re.MULTILINE)
TABLE = re.search(r"^TOOLS=\((.*?)^\)", SCRIPT.read_text(), re.MULTILINE | re.DOTALL)
assert TABLE is not None, "infra/ensure-tools.sh has no TOOLS=( ... ) table"
TOOLS = TOOL_LINE.findall(TABLE.group(1))  # (command, Debian package) pairs
COMMANDS = " ".join(command for command, _ in TOOLS)
PACKAGES = " ".join(package for _, package in TOOLS)

# apt-get that logs its arguments and, on install, puts each package's command on PATH.
FAKE_APT_GET = f"""
echo "apt-get $* DEBIAN_FRONTEND=${{DEBIAN_FRONTEND:-}}" >> "$LOG"
[ "$1" = install ] || exit 0
for tool in {" ".join(f"{package}:{command}" for command, package in TOOLS)}; do
  for arg in "$@"; do
    if [ "$arg" = "${{tool%%:*}}" ]; then
      echo '#!/bin/sh' > "$BIN/${{tool#*:}}"; chmod +x "$BIN/${{tool#*:}}"
    fi
  done
done
"""
SUDO_THAT_WORKS = (
    'echo "sudo $*" >> "$LOG"; [ "$1" = -n ] || exit 1; shift; [ "$1" = true ] || exec "$@"'
)
SUDO_THAT_ASKS = 'echo "sudo: a password is required" >&2; exit 1'
APT_INSTALL = "install -y -qq --no-install-recommends"


@dataclass
class Sandbox:
    bin: Path
    log: Path

    def fake(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f"#!{BASH}\n{body}\n")
        path.chmod(0o755)

    def run(self) -> subprocess.CompletedProcess[str]:
        env = {"PATH": str(self.bin), "LOG": str(self.log), "BIN": str(self.bin)}
        return subprocess.run(
            [BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    """A PATH with only env and chmod (what the script and fakes run besides builtins)."""
    box = Sandbox(bin=tmp_path / "bin", log=tmp_path / "calls.log")
    box.bin.mkdir()
    for tool in ("env", "chmod"):
        real = shutil.which(tool)
        assert real is not None
        (box.bin / tool).symlink_to(real)
    return box


def test_the_table_has_the_chromium_the_dashboard_test_runs() -> None:
    assert ("chromium", "chromium") in TOOLS
    assert (
        'shutil.which("chromium")'
        in (ROOT / "tests/services/operations/test_dashboard.py").read_text()
    )


def test_present_tools_install_nothing(sandbox: Sandbox) -> None:
    for command, _ in TOOLS:
        sandbox.fake(command, "exit 0")
    sandbox.fake("id", "echo 1000")
    sandbox.fake("apt-get", FAKE_APT_GET)
    result = sandbox.run()
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert sandbox.calls() == []


def test_root_installs_what_is_missing_with_apt_get(sandbox: Sandbox) -> None:
    sandbox.fake("id", "echo 0")
    sandbox.fake("apt-get", FAKE_APT_GET)
    result = sandbox.run()
    assert result.returncode == 0, result.stderr
    assert sandbox.calls() == [
        "apt-get update -qq DEBIAN_FRONTEND=",
        f"apt-get {APT_INSTALL} {PACKAGES} DEBIAN_FRONTEND=noninteractive",
    ]
    assert f"installing {PACKAGES} with apt-get" in result.stdout
    assert all((sandbox.bin / command).exists() for command, _ in TOOLS)


def test_a_user_with_passwordless_sudo_installs_through_it(sandbox: Sandbox) -> None:
    sandbox.fake("id", "echo 1000")
    sandbox.fake("sudo", SUDO_THAT_WORKS)
    sandbox.fake("apt-get", FAKE_APT_GET)
    result = sandbox.run()
    assert result.returncode == 0, result.stderr
    assert sandbox.calls() == [
        "sudo -n true",
        "sudo -n apt-get update -qq",
        "apt-get update -qq DEBIAN_FRONTEND=",
        f"sudo -n env DEBIAN_FRONTEND=noninteractive apt-get {APT_INSTALL} {PACKAGES}",
        f"apt-get {APT_INSTALL} {PACKAGES} DEBIAN_FRONTEND=noninteractive",
    ]


@pytest.mark.parametrize("sudo", [SUDO_THAT_ASKS, None], ids=["sudo-asks-a-password", "no-sudo"])
def test_a_user_who_cannot_install_gets_one_line_at_once(
    sandbox: Sandbox, sudo: str | None
) -> None:
    sandbox.fake("id", "echo 1000")
    if sudo is not None:
        sandbox.fake("sudo", sudo)
    sandbox.fake("apt-get", FAKE_APT_GET)
    result = sandbox.run()
    assert result.returncode == 1
    assert result.stderr == (
        f"error: the tests need {COMMANDS}: run 'apt-get install -y {PACKAGES}' as root, "
        "then make test again\n"
    )
    assert not [call for call in sandbox.calls() if call.startswith("apt-get")]


@pytest.mark.parametrize(
    ("apt_get", "reason"),
    [
        (None, f"no apt-get here; install the Debian packages {PACKAGES}"),
        (
            'echo "E: Unable to locate package" >&2; exit 100',
            f"apt-get could not install {PACKAGES}",
        ),
        ("exit 0", f"apt-get installed {PACKAGES} but {TOOLS[0][0]} is still not on PATH"),
    ],
    ids=["no-apt-get", "apt-get-fails", "installs-nothing"],
)
def test_root_without_a_working_apt_get_stops_with_one_line(
    sandbox: Sandbox, apt_get: str | None, reason: str
) -> None:
    sandbox.fake("id", "echo 0")
    if apt_get is not None:
        sandbox.fake("apt-get", apt_get)
    result = sandbox.run()
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"error: the tests need {COMMANDS}: {reason}"), result.stderr


def test_make_test_runs_it_before_anything_else() -> None:
    # run as make's own child (make test runs pytest), make says where it enters
    # unless told not to, and would pass its flags on: a clean environment for both
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "test"], cwd=ROOT, capture_output=True,
        text=True, timeout=60, check=True, env=env,
    )  # fmt: skip
    lines = dry_run.stdout.splitlines()
    assert lines[0] == "infra/ensure-tools.sh", dry_run.stdout
    assert lines[-1].endswith("pytest")
