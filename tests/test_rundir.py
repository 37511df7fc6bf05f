"""vae_lab.rundir: the statuses summary.json holds, the atomic JSON writer, and reading a run's status back."""
import json
import math

import pytest

from vae_lab import rundir
from vae_lab.rundir import Status


def strict_json(text):
    """json.loads that refuses NaN and Infinity, as JSON itself (and most readers other than Python's) does."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_statuses_are_the_strings_of_summary_json():
    assert {s.value for s in Status} == {"completed", "stopped", "interrupted", "diverged", "failed"}
    for s in Status:
        assert json.dumps({"status": s}) == f'{{"status": "{s.value}"}}'  # a plain string, no enum repr
        assert s == s.value and str(s) == f"{s}" == s.value and Status(s.value) is s
    assert [s for s in Status if not s.final] == [Status.STOPPED, Status.INTERRUPTED]


@pytest.mark.parametrize("status", list(Status))
def test_status_reads_back_what_was_written(status, tmp_path):
    rundir.write_json(tmp_path / rundir.SUMMARY, {"status": status, "steps": 3})
    assert strict_json((tmp_path / rundir.SUMMARY).read_text()) == {"status": status.value, "steps": 3}
    assert rundir.status(tmp_path) is status


def test_status_without_a_summary_is_none_and_of_a_damaged_one_unreadable(tmp_path):
    assert rundir.status(tmp_path) is None
    for damaged in ('{"status": "compl', "", "[1, 2]", "\x00\xff"):
        (tmp_path / rundir.SUMMARY).write_text(damaged)
        assert rundir.status(tmp_path) == "unreadable", damaged
        assert rundir.summary(tmp_path)["error"].startswith("summary.json: ")
    (tmp_path / rundir.SUMMARY).write_text('{"status": "paused"}')  # not a Status: the text found there
    assert rundir.status(tmp_path) == "paused"


def test_write_json_writes_nan_and_inf_as_strings(tmp_path):
    rundir.write_json(tmp_path / "a.json", {"elbo": math.nan, "kl": math.inf, "low": -math.inf, "ok": 1.5, "n": 2})
    assert strict_json((tmp_path / "a.json").read_text()) == {"elbo": "nan", "kl": "inf", "low": "-inf", "ok": 1.5,
                                                              "n": 2}


def test_write_json_writes_nested_nan_and_inf_as_strings(tmp_path):
    rundir.write_json(tmp_path / "a.json", {"kl_per_dim": [math.inf, 0.5], "mig_per_factor": {"shape": math.nan}})
    assert strict_json((tmp_path / "a.json").read_text()) == {"kl_per_dim": ["inf", 0.5],
                                                              "mig_per_factor": {"shape": "nan"}}


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "run" / "summary.json"  # the directory is made
    rundir.write_json(path, {"status": "stopped"})
    rundir.write_json(path, {"status": "completed"})
    assert strict_json(path.read_text()) == {"status": "completed"}
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]


def test_a_write_that_fails_leaves_the_old_file(tmp_path):
    path = tmp_path / "summary.json"
    rundir.write_text(path, "old\n")

    def half_then_fail(f):
        f.write(b"new, half writ")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        rundir.write_atomic(path, half_then_fail)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no *.tmp left behind
