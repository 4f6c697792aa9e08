"""``pbseg segment`` and ``pbseg info`` through the real entry point: batches, bad inputs, DICOM
folders, overwrite protection, interruption, surface options."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pipeline_model as pm
import pytest
import SimpleITK as sitk
from bad_inputs import BAD_INPUTS, write_dicom_series, write_image

from PediatricBoneSegLib.cli import main
from PediatricBoneSegLib.resources import bundled_sample_path

CENTRES = {1: (5.0, -6.0, 8.0), 2: (-4.0, 6.0, -10.0)}
SEMI_AXES = {1: (9.0, 7.0, 9.0), 2: (7.0, 6.0, 7.0)}
PBSEG = [sys.executable, "-c", "import sys; from PediatricBoneSegLib.cli import main; sys.exit(main())"]
CASE_FILES = {"segmentation.seg.nrrd", "labels.nii.gz", "morphometry.csv", "measurements.csv", "report.json", "qc.png"}


def _scene(seed: int) -> pm.Scene:
    return pm.make_scene(
        "knee", np.random.default_rng(seed), np.eye(3), (1.5, 1.5, 3.0), CENTRES, SEMI_AXES, field_of_view_mm=48.0
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A knee model (threshold network, no detection data) for the scenes of this module."""
    classes = pm.classes_by_intensity(pm.normalized_levels(_scene(0)))
    network = pm.threshold_network(pm.network_config(), {pm.JOINTS.index("knee"): classes})
    return pm.save_test_model(tmp_path_factory.mktemp("model") / "knee.safetensors", network, list(pm.JOINTS))


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def _arguments(inputs: list[str | Path], out: Path, model: Path, *extra: str) -> list[str]:
    """``pbseg segment`` of ``inputs`` with the knee test model, in fp32 (the same labels on every CPU)."""
    options = ["-o", str(out), "--model", str(model), "--joint", "knee", "--precision", "fp32", *extra]
    return ["segment", *map(str, inputs), *options]


def _segment(inputs: list[str | Path], out: Path, model: Path, *extra: str) -> int:
    return main(_arguments(inputs, out, model, *extra))


def test_batch_folder_with_bad_inputs_continues_and_fails_at_the_end(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture
) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    bad = {name: (BAD_INPUTS[name].make(batch), BAD_INPUTS[name].words) for name in ("2d", "nan nifti")}
    write_image(_scene(1).image, batch / "knee_a.nii.gz")
    write_image(_scene(2).image, batch / "knee_b.nrrd")
    out = tmp_path / "out"
    code = _segment([batch, tmp_path / "absent.nii.gz"], out, model)
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(bad) + 1  # one line per bad input, nothing else (every kind: test_bad_inputs.py)
    for path, words in bad.values():
        assert any(str(path) in line and words in line for line in errors), words
    assert any("absent.nii.gz: no such file or folder" in line for line in errors)
    assert "2 case(s) segmented, 3 failed" in captured.out
    assert "2 case(s) in " in captured.out and " cases per minute" in captured.out  # the batch's throughput
    assert _entries(out) == {"knee_a", "knee_b"}  # nothing for the bad inputs, no staging folders
    for case in ("knee_a", "knee_b"):
        assert _entries(out / case) == CASE_FILES | {"femur.stl", "tibia.stl"}
        report = json.loads((out / case / "report.json").read_text())
        assert report["joint"] == "knee" and report["input"].endswith((".nii.gz", ".nrrd"))
        assert {"read", "network", "surfaces", "write"} <= set(report["timings_s"])
    assert any(line.startswith("warning: knee_a: Patella: not found") for line in captured.err.splitlines())
    # a written case with warnings is "check", never "ok"
    assert any(line.split()[:2] == ["knee_a", "check"] for line in captured.out.splitlines())
    assert "case(s) to check (see their warnings): knee_a" in captured.out


def test_existing_outputs_need_overwrite_and_surface_options(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture
) -> None:
    source = write_image(_scene(3).image, tmp_path / "knee_c.nii.gz")
    out = tmp_path / "out"
    arguments = _arguments([source], out, model)
    assert main(arguments) == 0
    report = out / "knee_c" / "report.json"
    written = report.stat().st_mtime_ns
    capsys.readouterr()
    assert main(arguments) == 1
    assert "output folder exists (use --overwrite to replace it)" in capsys.readouterr().err
    assert report.stat().st_mtime_ns == written
    assert main([*arguments, "--overwrite", "--surface-format", "ply"]) == 0
    assert _entries(out / "knee_c") == CASE_FILES | {"femur.ply", "tibia.ply"}
    assert main([*arguments, "--overwrite", "--no-surfaces", "--no-postprocess"]) == 0
    assert _entries(out / "knee_c") == CASE_FILES
    report_data = json.loads(report.read_text())
    assert report_data["postprocess"] is False and report_data["bones"]["femur"]["mesh_volume_mm3"] is None
    assert _entries(out) == {"knee_c"}


def test_multi_echo_dicom_folder_gives_one_case_per_echo(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture
) -> None:
    write_dicom_series(tmp_path / "knee_mr", echoes=2, slices=6)
    out = tmp_path / "out"
    code = _segment([tmp_path / "knee_mr"], out, model, "--no-surfaces")
    assert code == 0, capsys.readouterr().err
    assert _entries(out) == {"knee_mr_echo1", "knee_mr_echo2"}
    labels = sitk.ReadImage(str(out / "knee_mr_echo1" / "labels.nii.gz"))
    assert labels.GetSize() == (10, 8, 6)


def test_model_problems_are_one_line_and_exit_2(tmp_path: Path, model: Path, capsys: pytest.CaptureFixture) -> None:
    source = write_image(_scene(4).image, tmp_path / "knee_d.nii.gz")
    assert (
        main(["segment", str(source), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "none.safetensors")]) == 2
    )
    assert "none.safetensors: model file not found" in capsys.readouterr().err
    # auto-detection with a model that has no detection data: the case fails with the reason
    assert main(["segment", str(source), "-o", str(tmp_path / "out"), "--model", str(model)]) == 1
    assert "choose the joint" in capsys.readouterr().err
    assert _entries(tmp_path / "out") == set()


def _default_sigint() -> None:
    """Child set-up: Ctrl-C handled as in a terminal. A process started in the background by a
    non-interactive shell (CI runners, ``cmd &``) inherits SIGINT *ignored*, and Python then never
    raises KeyboardInterrupt: that is POSIX behaviour, not the command's, so the test restores it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("signal_number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_interrupted_run_leaves_no_case_folder(
    tmp_path: Path, model: Path, signal_number: signal.Signals, exit_code: int
) -> None:
    """Ctrl-C (SIGINT) or a scheduler's SIGTERM while the case folder is being written: the run
    stops with 128 + the signal number and leaves nothing behind."""
    source = write_image(_scene(5).image, tmp_path / "knee_e.nii.gz")
    out = tmp_path / "out"
    command = [*PBSEG, *_arguments([source], out, model)]
    # On a busy machine the case may be finished before the poll sees it (exit 0), or the signal may
    # land during the final move, which completes first (the case is then written and said so):
    # those runs do not test an interrupted write, so try again.
    for _attempt in range(5):
        shutil.rmtree(out, ignore_errors=True)
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint
        )
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if any(name.startswith(".knee_e.partial-") for name in _entries(out)):
                os.kill(process.pid, signal_number)
                break
            time.sleep(0.002)
        _, stderr = process.communicate(timeout=120)
        if process.returncode != 0 and "was written to" not in stderr:
            break
    assert process.returncode == exit_code, stderr
    assert "interrupted: knee_e was not written" in stderr
    assert _entries(out) == set()


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` with its content: what a run must leave untouched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_never_deletes_an_input_folder_or_an_input_file(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture
) -> None:
    """A DICOM folder ``DIR/patient01`` segmented into ``-o DIR --overwrite`` would be its own case
    folder; so would ``DIR/knee/knee.nii.gz`` into ``-o DIR``. Both are refused, nothing is lost."""
    write_dicom_series(tmp_path / "patient01", echoes=1, slices=6)
    (tmp_path / "patient01" / "notes.txt").write_text("the radiologist's notes")
    (tmp_path / "knee").mkdir()
    write_image(_scene(6).image, tmp_path / "knee" / "knee.nii.gz")
    before = _tree(tmp_path)
    for source in (tmp_path / "patient01", tmp_path / "knee" / "knee.nii.gz"):
        assert _segment([source], tmp_path, model, "--overwrite", "--no-surfaces") == 1
        assert "holds the input" in capsys.readouterr().err
    assert _tree(tmp_path) == before


def test_dot_as_input_names_the_case_after_the_folder_and_keeps_earlier_cases(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    write_dicom_series(tmp_path / "patient02", echoes=1, slices=6)
    out = tmp_path / "out"
    earlier = write_image(_scene(7).image, tmp_path / "knee_f.nii.gz")
    assert _segment([earlier], out, model, "--no-surfaces") == 0
    kept = _tree(out / "knee_f")
    monkeypatch.chdir(tmp_path / "patient02")
    for dots in (".", "../patient02/."):
        assert _segment([dots], out, model, "--overwrite", "--no-surfaces") == 0, capsys.readouterr().err
        assert _entries(out) == {"knee_f", "patient02"}
    assert _tree(out / "knee_f") == kept


@pytest.mark.slow
def test_two_concurrent_runs_into_one_folder_one_wins_the_other_says_exists(tmp_path: Path, model: Path) -> None:
    """Two ``pbseg segment`` processes write the same case at once (started together, so both pass
    the check at the start): exactly one writes it, the other fails with 'exists'."""
    source = write_image(_scene(8).image, tmp_path / "knee_g.nii.gz")
    out = tmp_path / "out"
    command = [*PBSEG, *_arguments([source], out, model)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    results = [(process.wait(timeout=300), process.communicate()[1]) for process in processes]
    assert sorted(code for code, _ in results) == [0, 1], results
    loser = next(stderr for code, stderr in results if code == 1)
    assert "output folder exists" in loser or "written by another run meanwhile" in loser, loser
    assert _entries(out) == {"knee_g"}
    report = json.loads((out / "knee_g" / "report.json").read_text())
    assert set(report["files"]) == _entries(out / "knee_g")


def test_output_root_that_is_a_file_or_a_model_that_is_a_folder_fails_before_any_work(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture
) -> None:
    source = write_image(_scene(9).image, tmp_path / "knee_h.nii.gz")
    taken = tmp_path / "results.txt"
    taken.write_text("not a folder")
    assert _segment([source], taken / "sub", model) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{taken}: exists and is not a folder" in error
    assert main(["segment", str(source), "-o", str(tmp_path / "out"), "--model", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{tmp_path}: is a folder" in error
    assert taken.read_text() == "not a folder" and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("signal_number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_a_signal_during_start_up_ends_quietly_with_its_exit_code(
    tmp_path: Path, model: Path, signal_number: signal.Signals, exit_code: int
) -> None:
    """Importing PyTorch and VTK takes seconds: a signal then gives the shell's exit code and one
    line, no traceback."""
    source = write_image(_scene(10).image, tmp_path / "knee_i.nii.gz")
    command = [*PBSEG, "segment", str(source), "-o", str(tmp_path / "out"), "--model", str(model)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint
    )
    # Wait until PyTorch's libraries are being loaded (the sub-commands' imports, seconds long), as
    # a user's Ctrl-C right after pressing Enter would find it; a loaded machine may take a while.
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if "libtorch" in Path(f"/proc/{process.pid}/maps").read_text():
            break
        time.sleep(0.005)
    os.kill(process.pid, signal_number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert not (tmp_path / "out").exists()


def test_a_signal_during_discovery_ends_quietly(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from PediatricBoneSegLib.cli import segment

    real_discovery = segment.discover_sources

    def terminated_while_searching(*args: Any, **kwargs: Any) -> Any:
        signal.raise_signal(signal.SIGTERM)  # what a scheduler sends while a large folder is searched
        return real_discovery(*args, **kwargs)

    monkeypatch.setattr(segment, "discover_sources", terminated_while_searching)
    (tmp_path / "batch").mkdir()
    write_image(_scene(11).image, tmp_path / "batch" / "knee_j.nii.gz")
    assert _segment([tmp_path / "batch"], tmp_path / "out", model) == 143
    captured = capsys.readouterr()
    assert "interrupted: " in captured.err and "was not written" in captured.err
    assert "0 case(s) segmented, 1 failed" in captured.out and not (tmp_path / "out").exists()


def test_info_prints_the_manifest_and_a_summary(tmp_path: Path, model: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(model)]) == 0
    printed = capsys.readouterr().out
    manifest = json.loads(printed[: printed.index("\n}\n") + 2])
    assert manifest["name"] == "pbseg-test" and [j["key"] for j in manifest["joints"]] == list(pm.JOINTS)
    assert "resnet18 U-Net" in printed and "domain 1:   knee (Femur, Tibia, Patella, Fibula)" in printed
    assert "detection:  none" in printed
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a model")
    assert main(["info", str(broken)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(broken) in error


def test_good_sample_is_ok_and_a_garbage_one_names_its_unreliable_bones(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The bundled model on the sample knee: every bone reliable, ``ok``. The same knee with its
    contrast inverted (marrow dark instead of bright: another protocol) is segmented too: femur,
    tibia and patella reliable and at Dice >= 0.85 to the sample's, and a bone flagged only where
    it differs from the sample's (Dice < 0.85: bundled model 3 segments the inverted fibula in
    three pieces, relative Dice 0.80, and flags it). The same voxels shuffled (no anatomy left)
    give garbage: ``check``, naming the bones, a warning per bone and ``reliable: false`` in
    report.json (it printed ``ok ... 4/4`` before bones had a quality)."""
    sample = sitk.ReadImage(str(bundled_sample_path()), sitk.sitkFloat32)
    inverted = sitk.InvertIntensity(sample, float(sitk.GetArrayViewFromImage(sample).max()))
    voxels = sitk.GetArrayFromImage(sample)
    shuffled = sitk.GetImageFromArray(np.random.default_rng(0).permutation(voxels.ravel()).reshape(voxels.shape))
    shuffled.CopyInformation(sample)
    names = {"knee_good": sample, "knee_inverted": inverted, "knee_shuffled": shuffled}
    for name, image in names.items():
        write_image(image, tmp_path / f"{name}.nii.gz")
    out = tmp_path / "out"
    arguments = ["segment", *(str(tmp_path / f"{name}.nii.gz") for name in names)]
    assert main([*arguments, "-o", str(out), "--joint", "knee", "--precision", "fp32", "--no-surfaces"]) == 0
    captured = capsys.readouterr()
    rows = {line.split()[0]: line.split()[1] for line in captured.out.splitlines() if line.startswith("knee_")}
    assert rows["knee_good"] == "ok" and rows["knee_shuffled"] == "check"
    good = json.loads((out / "knee_good" / "report.json").read_text())
    assert all(bone["reliable"] is True and bone["quality"] > 0.5 for bone in good["bones"].values())
    assert good["unreliable_bones"] == [] and good["warnings"] == []
    inverted_report = json.loads((out / "knee_inverted" / "report.json").read_text())
    reference, found = (
        sitk.GetArrayFromImage(sitk.ReadImage(str(out / name / "labels.nii.gz")))
        for name in ("knee_good", "knee_inverted")
    )
    for value, key in enumerate(("femur", "tibia", "patella", "fibula"), start=1):
        a, b = reference == value, found == value
        dice = 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))
        bone = inverted_report["bones"][key]
        if key != "fibula":
            assert dice >= 0.85 and bone["reliable"] is True, (key, dice, bone)
        if bone["reliable"] is False:
            assert dice < 0.85, (key, dice)  # a flag only where the segmentation changed
    assert rows["knee_inverted"] == ("check" if inverted_report["unreliable_bones"] else "ok")
    bad = json.loads((out / "knee_shuffled" / "report.json").read_text())
    assert bad["bones"]["femur"]["reliable"] is False and bad["bones"]["femur"]["quality"] < 0.5
    assert "Femur" in bad["unreliable_bones"]
    assert "knee_shuffled (unreliable: Femur, Tibia, Patella, Fibula)" in captured.out
    assert "case(s) to check (see their warnings): " in captured.out and "knee_good (" not in captured.out
    assert any(
        line.startswith("warning: knee_shuffled: Femur: ") and ("unreliable" in line or "not found" in line)
        for line in captured.err.splitlines()
    )
