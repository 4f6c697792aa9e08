"""Resumable and sharded batches: ``pbseg segment --skip-existing`` keeps finished cases and redoes
unfinished ones; ``--shard I/N`` jobs cover the cohort exactly once, also as concurrent processes
writing into one output folder."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from bad_inputs import BAD_INPUTS, write_image
from test_cli_segment import PBSEG, _arguments, _entries, _scene, _segment, model  # noqa: F401 (a fixture)

from PediatricBoneSegLib.cli import main
from PediatricBoneSegLib.io.case_folder import finished_case
from PediatricBoneSegLib.shards import Shard


def _cohort(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    return [write_image(_scene(20 + i).image, folder / f"knee_{i}.nii.gz") for i in range(count)]


def _status_of(stdout: str) -> dict[str, str]:
    """case -> status from the summary table."""
    rows = [line.split() for line in stdout.splitlines()]
    return {row[0]: row[1] for row in rows if len(row) > 1 and row[1] in ("ok", "check", "skipped", "FAILED")}


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--shard", "2/2"], "invalid shard '2/2': shard 2/2: needs 0 <= I < N"),
        (["--shard", "a/3"], "invalid shard 'a/3': expected I/N"),
        (["--overwrite", "--skip-existing"], "not allowed with argument"),
        (["--dicom-seg", "--no-dicom-seg"], "not allowed with argument"),
    ],
)
def test_contradictory_or_bad_batch_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture, options: list[str], words: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["segment", str(tmp_path), "-o", str(tmp_path / "out"), *options])
    assert stopped.value.code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_shards_split_the_sorted_cases_whatever_order_they_come_in() -> None:
    names = [f"case{i:02d}" for i in range(11)]
    shuffled = random.Random(3).sample(names, len(names))
    shares = [Shard(i, 3).select(shuffled, key=str) for i in range(3)]
    assert shares == [Shard(i, 3).select(names, key=str) for i in range(3)]
    assert sorted(name for share in shares for name in share) == names and [len(share) for share in shares] == [4, 4, 3]


def test_skip_existing_keeps_finished_cases_and_redoes_unfinished_ones(
    tmp_path: Path,
    model: Path,  # noqa: F811 (the imported fixture)
    capsys: pytest.CaptureFixture,
) -> None:
    inputs = _cohort(tmp_path / "in", 3)
    out = tmp_path / "out"
    assert _segment([inputs[0], inputs[1]], out, model, "--no-surfaces") == 0
    kept = (out / "knee_0" / "report.json").read_bytes()
    (out / "knee_1" / "labels.nii.gz").unlink()  # e.g. removed by hand: no longer a finished case
    assert finished_case(out / "knee_0") and not finished_case(out / "knee_1")
    (out / "knee_2").mkdir()  # a folder pbseg did not write: never replaced
    (out / "knee_2" / "notes.txt").write_text("mine")
    capsys.readouterr()

    assert _segment([tmp_path / "in"], out, model, "--no-surfaces", "--skip-existing") == 1
    captured = capsys.readouterr()
    assert (out / "knee_0" / "report.json").read_bytes() == kept
    assert _status_of(captured.out) == {"knee_0": "skipped", "knee_1": "check", "knee_2": "FAILED"}
    assert finished_case(out / "knee_1")
    assert "not a case folder written by pbseg" in captured.err and (out / "knee_2" / "notes.txt").read_text() == "mine"
    assert "1 case(s) segmented, 1 failed, 1 skipped (finished earlier)" in captured.out

    (out / "knee_2" / "notes.txt").unlink()
    (out / "knee_2").rmdir()
    assert _segment([tmp_path / "in"], out, model, "--no-surfaces", "--skip-existing") == 0
    assert _status_of(capsys.readouterr().out) == {"knee_0": "skipped", "knee_1": "skipped", "knee_2": "check"}


@pytest.mark.slow
def test_two_shard_processes_into_one_folder_cover_the_cohort_once(
    tmp_path: Path,
    model: Path,  # noqa: F811 (the imported fixture)
) -> None:
    _cohort(tmp_path / "in", 5)
    BAD_INPUTS["2d"].make(tmp_path / "in")  # flat.nii.gz: a case that fails, in the sorted list as any case
    unstackable = BAD_INPUTS["dcm missing a slice"].make(tmp_path / "in")  # no case at all: a problem of the run
    out = tmp_path / "out"
    processes = [
        subprocess.Popen(
            [*PBSEG, *_arguments([tmp_path / "in"], out, model, "--no-surfaces", "--shard", f"{index}/2")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    results = [(process.wait(timeout=300), *process.communicate()) for process in processes]
    statuses = [_status_of(stdout) for _, stdout, _ in results]
    # sorted: flat, knee_0, ..., knee_4; shard 0 also reports the series that is no case (once per run)
    assert [code for code, _, _ in results] == [1, 0], results
    assert statuses[0] == {"flat": "FAILED", "knee_1": "check", "knee_3": "check", str(unstackable): "FAILED"}
    assert statuses[1] == {"knee_0": "check", "knee_2": "check", "knee_4": "check"}
    assert _entries(out) == {f"knee_{i}" for i in range(5)}  # no staging folder left, nothing twice
    for case in out.iterdir():
        assert finished_case(case) and json.loads((case / "report.json").read_text())["case"] == case.name
    # a requeued job: shard 1 twice at once, resuming, after one of its cases was removed; each case
    # is written once, the other copy keeps it (skipped), and both jobs succeed
    shutil.rmtree(out / "knee_2")
    resumed = [
        subprocess.Popen(
            [*PBSEG, *_arguments([tmp_path / "in"], out, model, "--no-surfaces", "--shard", "1/2", "--skip-existing")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(process.wait(timeout=300), *process.communicate()) for process in resumed]
    assert [code for code, _, _ in results] == [0, 0], results
    statuses = [_status_of(stdout) for _, stdout, _ in results]
    assert all(status["knee_0"] == status["knee_4"] == "skipped" for status in statuses)
    assert sorted(status["knee_2"] for status in statuses) == ["check", "skipped"]
    assert _entries(out) == {f"knee_{i}" for i in range(5)} and finished_case(out / "knee_2")
