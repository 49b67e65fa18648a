"""``clearing net`` through the real entry point: JSON answers, and every kind of
bad input exits 2 with one stderr line naming the line and nothing on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clearing_services.cli import main as entry
from clearing_services.cli.net import net

HEADER = "obligation_id,debtor,creditor,currency,amount_minor"
# The entry point registers `net` (cli.add_command(net)); until then the tests add it.
if "net" not in entry.cli.commands:
    entry.cli.add_command(net)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        entry.main(["net", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_json_answer(capsys: pytest.CaptureFixture[str], examples_dir: Path) -> None:
    code, out, err = run(capsys, str(examples_dir / "obligations.csv"), "--json", "--mode", "hub")
    assert (code, err) == (0, "")
    answer = json.loads(out)
    assert out.count("\n") == 1
    cny = answer["currencies"]["CNY"]
    assert cny["net_minor"] == 3070000
    assert cny["deferred"] == []


def test_limits_and_direct(capsys: pytest.CaptureFixture[str], examples_dir: Path) -> None:
    code, out, _ = run(
        capsys,
        str(examples_dir / "obligations.csv"),
        "--limits",
        str(examples_dir / "limits.csv"),
        "--mode",
        "direct",
        "--json",
    )
    assert code == 0
    cny = json.loads(out)["currencies"]["CNY"]
    assert cny["deferred"] == ["ppa-2026-11-01T00:15-002"]
    assert cny["settled_gross_minor"] == 3440000


def test_summary_table(capsys: pytest.CaptureFixture[str], examples_dir: Path) -> None:
    code, out, err = run(capsys, str(examples_dir / "obligations.csv"))
    assert (code, err) == (0, "")
    for word in ("CNY", "USD", "CLEARING_HOUSE"):
        assert word in out


def test_priority_column_and_trailing_blank_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, "o.csv", f"{HEADER},priority\na,P,Q,EUR,100,1\nb,P,R,EUR,100,\n\n")
    limits = write(tmp_path, "l.csv", "participant,currency,net_debit_cap_minor\nP,EUR,150\n")
    code, out, err = run(capsys, str(path), "--limits", str(limits), "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["currencies"]["EUR"]["deferred"] == ["b"]  # priority 0 < 1 waits


BAD_OBLIGATIONS = [
    ("missing column", "obligation_id,debtor,creditor,amount_minor\na,P,Q,5\n", 1, "currency"),
    ("non-integer", f"{HEADER}\na,P,Q,EUR,5\nb,P,Q,EUR,12.5\n", 3, "not an integer"),
    ("text amount", f"{HEADER}\na,P,Q,EUR,abc\n", 2, "not an integer"),
    ("int64 range", f"{HEADER}\na,P,Q,EUR,99999999999999999999\n", 2, "int64"),
    ("zero", f"{HEADER}\na,P,Q,EUR,5\nb,P,Q,EUR,0\n", 3, "> 0"),
    ("negative", f"{HEADER}\na,P,Q,EUR,-5\n", 2, "> 0"),
    ("self", f"{HEADER}\na,P,Q,EUR,5\nb,Q,Q,EUR,5\n", 3, "same participant"),
    ("empty file", "", 1, "empty file"),
    ("header only", f"{HEADER}\n", 2, "no obligations"),
    ("duplicate id", f"{HEADER}\na,P,Q,EUR,5\nb,P,Q,EUR,5\na,Q,P,EUR,1\n", 4, "line 2"),
    ("overflow", f"{HEADER}\na,P,Q,EUR,{2**62}\nb,Q,R,EUR,{2**62}\n", 3, "overflows int64"),
    ("fields", f"{HEADER}\na,P,Q,EUR,5\nb,P,Q,EUR,5,9\n", 3, "fields"),
    ("blank line", f"{HEADER}\na,P,Q,EUR,5\n\nb,P,Q,EUR,5\n", 3, "blank line"),
    ("empty id", f"{HEADER}\na,P,,EUR,5\n", 2, "empty creditor"),
    ("spaces", f"{HEADER}\na,P ,Q,EUR,5\n", 2, "trailing spaces"),
    ("reserved", f"{HEADER}\na,CLEARING_HOUSE,Q,EUR,5\n", 2, "reserved"),
    ("missing amount", f"{HEADER}\na,P,Q,EUR,\n", 2, "missing amount_minor"),
    ("priority", f"{HEADER},priority\na,P,Q,EUR,5,high\n", 2, "priority"),
    ("bad utf-8", f"{HEADER}\na,P,Q,EUR,5\n".encode() + b"b,\xff\xfe,Q,EUR,5\n", 3, "UTF-8"),
]


@pytest.mark.parametrize(
    ("case", "text", "line", "words"), BAD_OBLIGATIONS, ids=[c[0] for c in BAD_OBLIGATIONS]
)
def test_bad_obligations_exit_2_naming_the_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, text: str, line: int, words: str
) -> None:
    path = write(tmp_path, "obligations.csv", text)
    code, out, err = run(capsys, str(path), "--json")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert f"obligations.csv line {line}:" in err
    assert words in err


BAD_LIMITS = [
    ("negative", "participant,currency,net_debit_cap_minor\nP,EUR,-1\n", 2, ">= 0"),
    ("text", "participant,currency,net_debit_cap_minor\nP,EUR,lots\n", 2, "not an integer"),
    (
        "duplicate",
        "participant,currency,net_debit_cap_minor\nP,EUR,1\nQ,EUR,1\nP,EUR,2\n",
        4,
        "first on line 2",
    ),
    ("missing column", "participant,net_debit_cap_minor\nP,1\n", 1, "currency"),
    ("empty", "", 1, "empty file"),
]


@pytest.mark.parametrize(
    ("case", "text", "line", "words"), BAD_LIMITS, ids=[c[0] for c in BAD_LIMITS]
)
def test_bad_limits_exit_2_naming_the_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, text: str, line: int, words: str
) -> None:
    obligations = write(tmp_path, "o.csv", f"{HEADER}\na,P,Q,EUR,5\n")
    limits = write(tmp_path, "limits.csv", text)
    code, out, err = run(capsys, str(obligations), "--limits", str(limits))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert f"limits.csv line {line}:" in err
    assert words in err


def test_missing_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, str(tmp_path / "nope.csv"))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "cannot read" in err


def test_subprocess_end_to_end(examples_dir: Path, tmp_path: Path) -> None:
    """A fresh process through ``clearing_services.cli.main.main``: the real
    exit code and streams."""
    script = (
        "import sys\n"
        "from clearing_services.cli import main as entry\n"
        "from clearing_services.cli.net import net\n"
        "if 'net' not in entry.cli.commands:\n"
        "    entry.cli.add_command(net)\n"
        "entry.main(sys.argv[1:])\n"
    )
    good = subprocess.run(
        [sys.executable, "-c", script, "net", str(examples_dir / "obligations.csv"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["currencies"]["USD"]["net_minor"] == 90000
    bad = write(tmp_path, "bad.csv", f"{HEADER}\na,P,Q,EUR,-5\n")
    failed = subprocess.run(
        [sys.executable, "-c", script, "net", str(bad), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (failed.returncode, failed.stdout) == (2, "")
    assert failed.stderr.strip().endswith("line 2: amount_minor must be > 0, got -5")
