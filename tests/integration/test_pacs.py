"""OncoLabel and a real PACS: Orthanc with its DICOMweb plugin on 127.0.0.1, fed real DICOM (dcmqi's CT series, the
same series gantry-tilted and as one multi-frame file); a cohort imported into a folder, a server fed from it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.cli import main
from oncolabel.errors import InvalidInputError
from oncolabel.io import check_same_geometry, read_image
from oncolabel.pacs import check_dicomweb_url, check_uid
from oncolabel.provenance import file_sha256
from oncolabel.server.process import ServerProcess, free_port
from tests.conftest import multiframe_dicom_copy, realdata, tilted_dicom_copy

PATIENT = "99000"  # dcmqi's CT series' PatientID


def _series_uid(path: Path) -> str:
    import pydicom

    first = path if path.is_file() else sorted(path.glob("*.dcm"))[0]
    return str(pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID)


def _series(tmp_path: Path) -> dict[str, Path]:
    return {"plain": realdata("dcmqi", "segmentations", "ct-3slice"),
            "tilted": tilted_dicom_copy(tmp_path / "tilted", 15.0, new_uids=True),
            "enhanced": multiframe_dicom_copy(tmp_path / "enhanced", order=(2, 0, 1))}


def _same_volume(a: sitk.Image, b: sitk.Image) -> None:
    check_same_geometry(a, b)
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))


def test_pacs_import_reads_each_series_as_its_folder_and_names_the_refused_one(tmp_path, orthanc, capsys):
    series = _series(tmp_path)
    orthanc.upload(*series.values())
    uid = {k: _series_uid(p) for k, p in series.items()}
    out, report = tmp_path / "cohort", tmp_path / "report.json"
    assert main(["pacs-import", orthanc.dicomweb, "--out", str(out), "--json", str(report)]) == 0
    captured = capsys.readouterr()
    assert "2 series imported, 0 already there, 1 refused" in captured.out
    assert f"series {uid['tilted']} not imported" in captured.err and "gantry tilt about 15.0 degrees" in captured.err
    reference = read_image(series["plain"])
    for key in ("plain", "enhanced"):  # over WADO-RS exactly as from the folder
        _same_volume(reference, read_image(out / f"{uid[key]}.nii.gz"))
    manifest = json.loads((out / "pacs_series.json").read_text())
    assert set(manifest) == {uid["plain"], uid["enhanced"]}
    record = manifest[uid["plain"]]
    assert record["patient_id"] == PATIENT and record["pacs_url"] == orthanc.dicomweb
    assert record["sha256"] == file_sha256(out / record["file"])
    written = json.loads(report.read_text())
    assert list(written["refused"]) == [uid["tilted"]] and "research use only" in written["notice"].lower()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["pacs-import", orthanc.dicomweb, "--out", str(out)]) == 0  # again: nothing new, nothing replaced
    assert "0 series imported, 2 already there, 1 refused" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_pacs_import_from_a_pacs_that_does_not_answer(tmp_path, capsys):
    down = f"http://127.0.0.1:{free_port()}/dicom-web"
    assert main(["pacs-import", down, "--out", str(tmp_path / "cohort")]) == 1
    err = capsys.readouterr().err
    assert "cannot connect to the PACS" in err and err.count("\n") == 1 and not (tmp_path / "cohort").exists()
    assert main(["pacs-import", "127.0.0.1:8042", "--out", str(tmp_path / "cohort")]) == 1
    assert "not a DICOMweb URL" in capsys.readouterr().err


def test_ids_and_urls_from_outside_are_checked():
    assert check_uid("1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"
    for bad in ("../1.2", "1.2/3", "1..2", "", "1." + "2" * 70, "1.2 "):
        with pytest.raises(InvalidInputError, match="not a DICOM UID"):
            check_uid(bad)
    assert check_dicomweb_url("http://127.0.0.1:8042/dicom-web/") == "http://127.0.0.1:8042/dicom-web"
    for bad in ("ftp://host/x", "/dicom-web", "http:///x"):
        with pytest.raises(InvalidInputError, match="not a DICOMweb URL"):
            check_dicomweb_url(bad)


def test_serve_names_a_pacs_url_given_as_the_studies_folder(tmp_path):
    """MONAI Label's ``--studies http://.../dicom-web`` habit: the datastore is a folder here, the PACS ``--pacs``
    (it was read as a relative folder name: ".../http:/127.0.0.1:8042/dicom-web: studies folder does not exist")."""
    from oncolabel.server.app import serve

    with pytest.raises(InvalidInputError, match="a URL; give a local folder as --studies .* --pacs URL"):
        serve("http://127.0.0.1:8042/dicom-web")
    with pytest.raises(InvalidInputError, match="poll interval -1"):
        serve(tmp_path, pacs_url="http://127.0.0.1:8042/dicom-web", pacs_poll_s=-1)


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_server_fed_from_the_pacs(tmp_path, orthanc):
    """``oncolabel serve --studies DIR --pacs URL``: the PACS's CT series reach the datastore in the background (and
    a series stored later, with the next poll); MONAI Label's own client lists and infers them; the tilted series is
    refused once, with the reason, in the mirror's state file."""
    from monailabel.client import MONAILabelClient

    series = _series(tmp_path)
    orthanc.upload(series["plain"], series["tilted"])
    uid = {k: _series_uid(p) for k, p in series.items()}
    studies = tmp_path / "studies"
    studies.mkdir()
    with ServerProcess(studies, extra_args=["--pacs", orthanc.dicomweb, "--pacs-poll-s", "1"]) as server:
        ml = MONAILabelClient(server.url)
        objects = _wait_for(lambda: ml.datastore().get("objects", {}).get(uid["plain"]) and ml.datastore()["objects"],
                            90, "the PACS series in the datastore")
        info = objects[uid["plain"]]["image"]["info"]
        assert info["patient_id"] == PATIENT and info["pacs_url"] == orthanc.dicomweb
        label_file, params = ml.infer("bone_metastasis", uid["plain"], {})
        reference = read_image(series["plain"])
        check_same_geometry(reference, read_image(label_file))
        orthanc.upload(series["enhanced"])  # stored in the PACS while the server runs
        _wait_for(lambda: uid["enhanced"] in ml.datastore().get("objects", {}), 60, "the later series")
        _same_volume(reference, read_image(studies / f"{uid['enhanced']}.nii.gz"))
        state = json.loads((studies / ".oncolabel" / "pacs_mirror.json").read_text())
        assert "gantry tilt" in state["refused"][uid["tilted"]] and state["last_error"] is None
        assert uid["tilted"] not in ml.datastore()["objects"]
