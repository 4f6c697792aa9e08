"""``pbseg report OUTDIR``: cohort.csv and a self-contained cohort.html from real case folders
(written by ``pbseg segment`` with the test model), unfinished and to-check cases first, ages from
the names; the page is opened in a real headless Chromium (the test skips only when no Chromium is
installed) where its script runs and sorts."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from bad_inputs import write_image
from test_cli_segment import _scene, _segment, model  # noqa: F401 (a fixture)

from PediatricBoneSegLib.cli import main
from PediatricBoneSegLib.io.cohort import age_from_names

CHROMIUM = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)
AGES = {"knee_age7": 7.0, "knee_age12p5": 12.5, "knee_14y": 14.0}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, model: Path) -> Path:  # noqa: F811 (the imported fixture)
    """Three finished cases named with ages, one unfinished folder; then ``pbseg report``."""
    folder = tmp_path_factory.mktemp("cohort")
    inputs = [write_image(_scene(30 + i).image, folder / f"{name}.nii.gz") for i, name in enumerate(AGES)]
    out = folder / "out"
    assert _segment(inputs, out, model, "--no-surfaces") == 0
    shutil.copytree(out / "knee_14y", out / "knee_broken")
    (out / "knee_broken" / "labels.nii.gz").unlink()
    assert main(["report", str(out)]) == 0
    return out


def test_ages_are_read_from_names() -> None:
    assert age_from_names("knee_age7") == 7.0 and age_from_names("x", "/data/age_12.5/knee.nii.gz") == 12.5
    assert age_from_names("P03_9yo_knee") == 9.0 and age_from_names("ankle-14years") == 14.0
    assert age_from_names("knee_t1_3T", "series7", "/data/2024/knee.nii.gz") is None


def test_cohort_csv_has_one_row_per_case_needing_a_look_first(cohort: Path) -> None:
    with (cohort / "cohort.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert (rows[0]["case"], rows[0]["status"]) == ("knee_broken", "unfinished")
    assert sorted(row["case"] for row in rows) == sorted([*AGES, "knee_broken"])
    for row in rows[1:]:
        report = json.loads((cohort / row["case"] / "report.json").read_text())
        assert row["status"] == ("check" if report["warnings"] or report["unreliable_bones"] else "ok")
        assert float(row["age_years"]) == AGES[row["case"]]
        assert float(row["femur_voxel_volume_mm3"]) == report["bones"]["femur"]["voxel_volume_mm3"]
        assert row["patella_present"] == str(report["bones"]["patella"]["present"])
        assert float(row["femur_principal_axis_1_mm"]) > 0  # from morphometry.csv
        for measurement in report.get("measurements", []):  # the clinical measurements, value or reason
            value = measurement["value"]
            assert row[f"measurement_{measurement['key']}"] == ("" if value is None else str(value))
            assert row[f"measurement_{measurement['key']}_reason"] == (measurement.get("reason") or "")
    statuses = [row["status"] for row in rows]
    assert statuses == sorted(statuses, key=("unfinished", "check", "ok").index)


def test_cohort_page_is_self_contained(cohort: Path) -> None:
    page = (cohort / "cohort.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', page)) == len(AGES)  # the unfinished one has none
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)  # nothing fetched from a network
    assert page.count("<figure>") == 4 and page.count("<svg") == 2  # a figure per knee bone, plots of the found
    assert "Femur: volume vs age, 3 cases" in page and "Patella: volume vs age, 0 cases" in page
    assert page.index("knee_broken") < min(page.index(f">{name}<") for name in AGES)


def test_an_existing_page_not_written_by_report_is_never_replaced(
    tmp_path: Path, cohort: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    shutil.copytree(cohort, out)
    (out / "cohort.html").write_text("<html>my notes</html>")
    assert main(["report", str(out)]) == 2
    assert "cohort.html: exists and was not written by pbseg report" in capsys.readouterr().err
    assert (out / "cohort.html").read_text() == "<html>my notes</html>"


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_the_page_runs_and_sorts_in_headless_chromium(cohort: Path, tmp_path: Path) -> None:
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    url = (cohort / "cohort.html").as_uri() + "#sort=-age"
    dom = subprocess.run([*browser, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    assert 'data-ready="true"' in dom and 'data-sorted="-age"' in dom  # the script ran to its end
    order = [
        name for name in re.findall(r'<td data-sort="([^"]+)">\1</td>', dom) if name in AGES or name == "knee_broken"
    ]
    assert order == ["knee_14y", "knee_age12p5", "knee_age7", "knee_broken"]  # oldest first, no age last
    shot = tmp_path / "page.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1400,900", url], capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
