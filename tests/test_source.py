"""Every new record names the code that made it (package version, git commit, uncommitted
changes); a record made before that was kept reads, serialises and digests as it always did."""

import json
import re
import subprocess
from pathlib import Path

from cifar_utils.runs import source
from cifar_utils.runs.record import RunRecord
from cifar_utils.runs.source import source_identity
from cifar_utils.version import __version__
from tests.factories import make_record

ROOT = Path(__file__).resolve().parents[1]
OLD_RECORD = sorted((ROOT / "results" / "reference" / "runs").glob("exp*/record.json"))[0]


def test_a_checkout_names_its_commit_and_whether_it_was_changed():
    found = source_identity()
    assert found["package_version"] == __version__
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        assert found["commit"] == head and re.fullmatch(r"[0-9a-f]{12}", head) and isinstance(found["dirty"], bool)


def test_outside_a_checkout_of_the_package_there_is_no_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(source, "ROOT", tmp_path)  # an installed copy, no git anywhere above it
    assert source_identity() == {"package_version": __version__, "commit": None, "dirty": None}
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.setattr(source, "ROOT", tmp_path / "venv" / "site-packages")  # inside someone else's checkout
    (tmp_path / "venv" / "site-packages").mkdir(parents=True)
    assert source_identity()["commit"] is None


def test_a_record_made_before_the_source_was_kept_reads_and_digests_as_before():
    on_disk = json.loads(OLD_RECORD.read_text())
    record = RunRecord.from_file(OLD_RECORD)
    assert "source" not in on_disk and record.source == {}
    assert record.to_json() == json.dumps(on_disk, indent=1)  # not a field more, not one less


def test_a_record_keeps_its_source_through_the_file(tmp_path):
    record = make_record(2, 50.0)
    record.source = {"package_version": "0.2.0", "commit": "0123456789ab", "dirty": True}
    (tmp_path / "record.json").write_text(record.to_json())
    again = RunRecord.from_file(tmp_path / "record.json")
    assert again.source == record.source and again == record and again.digest() == record.digest()
    assert again.digest() != make_record(2, 50.0).digest()
