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
from tests.conftest import label_slices_by_instance, multiframe_dicom_copy, realdata, tilted_dicom_copy

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
    progress = sorted(line for line in captured.err.splitlines() if "/3] series" in line)  # a line per series
    assert len(progress) == 3 and sum(line.endswith(" imported") for line in progress) == 2
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
    only = tmp_path / "only"  # a QIDO-RS query narrows the import (the multi-frame copy is series number 99)
    assert main(["pacs-import", orthanc.dicomweb, "--out", str(only), "--query", "SeriesNumber=99"]) == 0
    assert "1 series imported, 0 already there, 0 refused" in capsys.readouterr().out
    assert sorted(p.name for p in only.glob("*.nii.gz")) == [f"{uid['enhanced']}.nii.gz"]
    for bad, match in (("SeriesNumbr=99", "'SeriesNumbr' is not a DICOM keyword"), ("99", "expected KEY=VALUE")):
        assert main(["pacs-import", orthanc.dicomweb, "--out", str(tmp_path / "bad"), "--query", bad]) == 1
        assert match in capsys.readouterr().err and not (tmp_path / "bad").exists()


def _boxed_label(image: sitk.Image) -> sitk.Image:
    """A label on ``image``'s grid: a 30 x 20 pixel box on its middle slice (value 1)."""
    arr = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    arr[arr.shape[0] // 2, 200:220, 250:280] = 1
    label = sitk.GetImageFromArray(arr)
    label.CopyInformation(image)
    return label


def _stored_segmentations(orthanc, source_folder: Path) -> list[dict[str, np.ndarray]]:
    """Each DICOM SEG in the PACS that references the series in ``source_folder``, decoded by highdicom: source
    SOPInstanceUID -> its mask (segment 1)."""
    import highdicom as hd
    import pydicom
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=orthanc.dicomweb)
    sop_uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
                for f in sorted(source_folder.glob("*.dcm"))]
    out = []
    for found in client.search_for_series(search_filters={"Modality": "SEG"}):
        ds = pydicom.Dataset.from_json(found)
        for instance in client.retrieve_series(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)):
            if _series_uid(source_folder) not in {str(r.SeriesInstanceUID) for r in instance.ReferencedSeriesSequence}:
                continue
            seg = hd.seg.Segmentation.from_dataset(instance)
            masks = seg.get_pixels_by_source_instance(sop_uids, segment_numbers=[1],
                                                      assert_missing_frames_are_empty=True)
            out.append({"series_uid": str(ds.SeriesInstanceUID),
                        "type": str(seg.SegmentSequence[0].SegmentAlgorithmType),
                        **{uid: masks[i, ..., 0] for i, uid in enumerate(sop_uids)}})
    return out


def test_pacs_export_sends_a_label_back_as_dicom_seg(tmp_path, orthanc, capsys):
    """A label made on an imported image goes back as a DICOM SEG that highdicom decodes, instance by instance, to
    the label's slices (the multi-frame series' too); a label on another grid and a file not named by a series UID
    are refused by name and store nothing."""
    series = _series(tmp_path)
    orthanc.upload(series["plain"], series["enhanced"])
    out = tmp_path / "cohort"
    assert main(["pacs-import", orthanc.dicomweb, "--out", str(out)]) == 0
    uid = _series_uid(series["plain"])
    image = read_image(out / f"{uid}.nii.gz")
    labels = tmp_path / "labels"
    labels.mkdir()
    label = _boxed_label(image)
    sitk.WriteImage(label, str(labels / f"{uid}.nii.gz"))
    capsys.readouterr()
    assert main(["pacs-export", orthanc.dicomweb, str(labels / f"{uid}.nii.gz"), "--manual"]) == 0
    assert "stored as DICOM SEG series" in capsys.readouterr().out
    (stored,) = _stored_segmentations(orthanc, series["plain"])
    assert stored["type"] == "SEMIAUTOMATIC"
    expected = label_slices_by_instance(label, series["plain"])
    assert sum(int(m.sum()) for m in expected.values()) == 600
    for sop, mask in expected.items():
        assert np.array_equal(stored[sop], mask), sop
    shifted = label[:, :, 1:]  # the same box on a grid one slice shorter: no longer the series' grid
    sitk.WriteImage(shifted, str(labels / f"{uid}.nrrd"))
    other = labels / "case1.nii.gz"
    sitk.WriteImage(label, str(other))
    enhanced_uid = _series_uid(series["enhanced"])
    enhanced = out / f"{enhanced_uid}.nii.gz"
    sitk.WriteImage(_boxed_label(read_image(enhanced)), str(labels / enhanced.name))
    assert main(["pacs-export", orthanc.dicomweb, str(labels / f"{uid}.nrrd"), str(other),
                 str(labels / enhanced.name)]) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert "does not lie on the series' grid" in err and "case1" in err and "not a DICOM UID" in err
    assert err.count("not stored") == 2 and f"{enhanced.name}: stored as DICOM SEG" in captured.out
    assert len(_stored_segmentations(orthanc, series["plain"])) == 1  # nothing more stored
    # annotations come back as labels: the newest SEG of each series (dcmqi's real liver SEG of 2016 is older)
    orthanc.upload(realdata("dcmqi", "segmentations", "liver.dcm"))
    annotated = tmp_path / "annotated"
    assert main(["pacs-import", orthanc.dicomweb, "--out", str(annotated), "--labels"]) == 0
    assert "2 label(s) imported from DICOM SEG, 0 refused" in capsys.readouterr().out
    for name, sent in ((f"{uid}.nii.gz", labels / f"{uid}.nii.gz"), (enhanced.name, labels / enhanced.name)):
        back, original = read_image(annotated / "labels" / name), read_image(sent)  # the multi-frame series' too
        check_same_geometry(original, back)
        assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(original))
    assert json.loads((annotated / "pacs_series.json").read_text())[uid]["label"]["seg_series_uid"] \
        == stored["series_uid"]


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
    with pytest.raises(InvalidInputError, match="a PACS query, label import or series limit was asked for without"):
        serve(tmp_path, pacs_query={"PatientID": "P1"})
    with pytest.raises(InvalidInputError, match="series limit was asked for without a PACS"):
        serve(tmp_path, pacs_max_series=10)
    from oncolabel.config import ServerConfig

    with pytest.raises(InvalidInputError, match="pacs_store_labels=true needs a PACS"):
        ServerConfig.from_conf(tmp_path, {"pacs_store_labels": "true"})
    with pytest.raises(InvalidInputError, match="not a DICOMweb URL"):
        ServerConfig.from_conf(tmp_path, {"pacs_url": "orthanc:8042"})


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

    from oncolabel.dicom_seg import segmentation_dataset, series_headers

    series = _series(tmp_path)
    series["annotated"] = tilted_dicom_copy(tmp_path / "annotated", 0.0, new_uids=True)  # another plain series
    annotation = _boxed_label(read_image(series["annotated"]))  # a reader's SEG of it, already in the PACS
    segmentation_dataset(annotation, series_headers(series["annotated"]), segments={1: "metastasis"}, manual=True,
                         algorithm="reader", version="1").save_as(tmp_path / "annotation.dcm")
    orthanc.upload(series["plain"], series["tilted"], series["annotated"], tmp_path / "annotation.dcm")
    uid = {k: _series_uid(p) for k, p in series.items()}
    studies = tmp_path / "studies"
    studies.mkdir()
    with ServerProcess(studies, extra_args=["--pacs", orthanc.dicomweb, "--pacs-poll-s", "1", "--pacs-labels",
                                            "--pacs-store-labels"]) as server:
        ml = MONAILabelClient(server.url)
        objects = _wait_for(lambda: ml.datastore().get("objects", {}).get(uid["plain"]) and ml.datastore()["objects"],
                            90, "the PACS series in the datastore")
        info = objects[uid["plain"]]["image"]["info"]
        assert info["patient_id"] == PATIENT and info["pacs_url"] == orthanc.dicomweb
        final = _wait_for(lambda: ml.datastore()["objects"].get(uid["annotated"], {}).get("labels", {}).get("final"),
                          60, "the reader's SEG as the final label")
        assert final["info"]["source"] == "dicomweb-seg" and "pacs_seg_series_uid" not in final["info"]
        got = read_image(studies / "labels" / "final" / f"{uid['annotated']}.nii.gz")
        assert np.array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(annotation))
        assert uid["annotated"] not in ml.next_sample("random", {}).get("id", "")  # labelled: not proposed
        assert len(_stored_segmentations(orthanc, series["annotated"])) == 1  # not sent back to where it came from
        label_file, params = ml.infer("bone_metastasis", uid["plain"], {})
        reference = read_image(series["plain"])
        check_same_geometry(reference, read_image(label_file))
        corrected = _boxed_label(reference)  # a reader's label, submitted: kept locally and sent back as SEG
        sitk.WriteImage(corrected, str(tmp_path / "final.nii.gz"))
        ml.save_label(uid["plain"], str(tmp_path / "final.nii.gz"), tag="final")
        info = ml.datastore()["objects"][uid["plain"]]["labels"]["final"]["info"]
        (stored,) = _stored_segmentations(orthanc, series["plain"])
        assert info["pacs_seg_series_uid"] == stored["series_uid"] and stored["type"] == "SEMIAUTOMATIC"
        for sop, mask in label_slices_by_instance(corrected, series["plain"]).items():
            assert np.array_equal(stored[sop], mask), sop
        orthanc.upload(series["enhanced"])  # stored in the PACS while the server runs
        _wait_for(lambda: uid["enhanced"] in ml.datastore().get("objects", {}), 60, "the later series")
        _same_volume(reference, read_image(studies / f"{uid['enhanced']}.nii.gz"))
        state = json.loads((studies / ".oncolabel" / "pacs_mirror.json").read_text())
        assert "gantry tilt" in state["refused"][uid["tilted"]] and state["last_error"] is None
        assert uid["tilted"] not in ml.datastore()["objects"]
        import requests

        requests.delete(f"{server.url}/datastore/", params={"id": uid["enhanced"]}, timeout=30).raise_for_status()
        runs = state["runs"]
        _wait_for(lambda: json.loads((studies / ".oncolabel" / "pacs_mirror.json").read_text())["runs"] >= runs + 2,
                  30, "two more imports")
        assert uid["enhanced"] not in ml.datastore()["objects"]  # removed by a user: not imported again


class CappingProxy:
    """A DICOMweb front of Orthanc on 127.0.0.1 that answers each QIDO-RS search with at most ``cap`` results
    whatever ``limit`` asks for (none: ``cap``), as the Google Cloud Healthcare API (100) and dcm4chee (its
    configured maximum) do, paging with ``offset``; ``includefield=False``: a PACS that ignores ``includefield``
    (it answers with its default attributes). Each request's path and query as the client sent them are recorded in
    ``requests``."""

    def __init__(self, orthanc, cap: int, *, includefield: bool = True) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qsl, urlsplit

        import requests as http

        self.requests: list[tuple[str, dict[str, str]]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                url = urlsplit(self.path)
                pairs = parse_qsl(url.query)  # includefield may repeat
                query = dict(pairs)
                proxy.requests.append((url.path, query))
                if not includefield:
                    pairs = [(k, v) for k, v in pairs if k != "includefield"]
                if url.path.endswith("/series") or url.path.endswith("/studies"):
                    limit = str(min(int(query.get("limit", cap)), cap))
                    pairs = [(k, v) for k, v in pairs if k != "limit"] + [("limit", limit)]
                answer = http.get(f"{orthanc.root}{url.path}", params=pairs, timeout=30,
                                  headers={"Accept": self.headers.get("Accept", "*/*")})
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/octet-stream"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dicomweb = f"http://127.0.0.1:{self._server.server_address[1]}/dicom-web"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_a_pacs_that_answers_page_by_page_is_read_to_the_end(tmp_path, orthanc, capsys):
    """A PACS that returns only its first results to a search (here 2 of 3 series) is paged through with limit and
    offset (the import took 2 of the 3 series before); ``--max-series`` imports in batches, in UID order."""
    from oncolabel.pacs import DicomWebSource

    series = {"plain": realdata("dcmqi", "segmentations", "ct-3slice"),
              "enhanced": multiframe_dicom_copy(tmp_path / "enhanced", order=(2, 0, 1)),
              "second": tilted_dicom_copy(tmp_path / "second", 0.0, new_uids=True)}
    orthanc.upload(*series.values())
    uid = {k: _series_uid(p) for k, p in series.items()}
    proxy = CappingProxy(orthanc, cap=2)
    try:
        found = DicomWebSource(proxy.dicomweb).find_series()
        assert sorted(s.series_uid for s in found) == sorted(uid.values())
        searches = [query for path, query in proxy.requests if path.endswith("/series")]
        assert [(q.get("limit"), q.get("offset")) for q in searches] == [("100", "0"), ("100", "2"), ("100", "3")]
        out = tmp_path / "cohort"
        in_order = [s.series_uid for s in found]
        assert main(["pacs-import", proxy.dicomweb, "--out", str(out), "--max-series", "2"]) == 0
        printed = capsys.readouterr().out
        assert "2 series imported, 0 already there, 0 refused" in printed and "; 1 left for a later run" in printed
        assert sorted(p.name for p in out.glob("*.nii.gz")) == sorted(f"{u}.nii.gz" for u in in_order[:2])
        assert main(["pacs-import", proxy.dicomweb, "--out", str(out), "--max-series", "2"]) == 0
        assert "1 series imported, 2 already there, 0 refused (" in capsys.readouterr().out
        assert main(["pacs-import", proxy.dicomweb, "--out", str(out), "--max-series", "-1"]) == 1
        assert "must be a whole number >= 0" in capsys.readouterr().err
    finally:
        proxy.close()


def test_annotations_are_looked_for_once_per_study_and_a_newer_seg_replaces_a_refused_one(tmp_path, orthanc):
    """Two series of one study: one SEG search for the study, each SEG's references asked for once however often
    the import runs; dcmqi's partial_overlaps SEG (the newest of the plain series, overlapping segments) is refused
    and not read again, and a reader's newer SEG of that series is then imported. The PACS ignores includefield
    (Orthanc then answers without series date and time): SEGs are ordered by the dates in their own headers (by the
    search answer alone, the reader's SEG, whose UID sorts first, was taken for the oldest)."""
    from oncolabel.dicom_seg import segmentation_dataset, series_headers
    from oncolabel.pacs import DicomWebSource, FolderStore, import_labels, import_series

    plain = realdata("dcmqi", "segmentations", "ct-3slice")
    enhanced = multiframe_dicom_copy(tmp_path / "enhanced", order=(2, 0, 1))  # same study, its own series
    orthanc.upload(plain, enhanced, realdata("dcmqi", "segmentations", "liver.dcm"),
                   realdata("dcmqi", "segmentations", "partial_overlaps.dcm"))
    proxy = CappingProxy(orthanc, cap=100, includefield=False)
    try:
        source = DicomWebSource(proxy.dicomweb)
        store = FolderStore(tmp_path / "cohort", url=source.url)
        import_series(source, store.add)
        series = store.imported_series()
        assert len({s.study_uid for s in series}) == 1 and len(series) == 2
        proxy.requests.clear()
        first = import_labels(source, series, reference=store.image, store=store.add_label)
        uid = _series_uid(plain)
        assert list(first.refused) == [uid] and "overlap" in first.refused[uid] and first.imported == {}
        assert first.refused_seg[uid] == _series_uid(realdata("dcmqi", "segmentations", "partial_overlaps.dcm"))
        searches = [q for path, q in proxy.requests if path.endswith("/series")]
        metadata = [path for path, q in proxy.requests if path.endswith("/metadata")]
        assert len(searches) == 2 and all(q["Modality"] == "SEG" for q in searches)  # one study: a page + an end
        assert len([m for m in metadata if "37731.665795" in m or "90452.128469" in m]) == 2  # each SEG once
        proxy.requests.clear()
        again = import_labels(source, series, reference=store.image, store=store.add_label,
                              skip_segs=set(first.refused_seg.values()))
        assert again.imported == {} and again.refused == {}  # the refused SEG is not read again
        assert not [path for path, q in proxy.requests if path.endswith("/metadata")] and \
            not [path for path, q in proxy.requests if "/series/" in path and not path.endswith("/series")]
        annotation = _boxed_label(store.image(next(s for s in series if s.series_uid == uid)))
        reader = segmentation_dataset(annotation, series_headers(plain), segments={1: "metastasis"}, manual=True,
                                      algorithm="reader", version="1")
        reader.SeriesInstanceUID = "1.2.1." + reader.SeriesInstanceUID.rsplit(".", 1)[-1]  # sorts before dcmqi's
        orthanc.upload(_write(reader, tmp_path / "reader.dcm"))
        newer = import_labels(source, series, reference=store.image, store=store.add_label,
                              skip_segs=set(first.refused_seg.values()))
        assert list(newer.imported) == [uid] and newer.refused == {}
        assert np.array_equal(sitk.GetArrayFromImage(read_image(store.label_path(uid))),
                              sitk.GetArrayFromImage(annotation))
    finally:
        proxy.close()


def _write(ds, path: Path) -> Path:
    ds.save_as(path)
    return path


def test_the_mirror_stops_at_its_series_limit_and_rereads_only_newer_annotations(tmp_path, orthanc):
    """``--pacs-max-series``: the mirror imports at most that many series in all (across runs and restarts; the
    rest named as deferred); with ``--pacs-labels`` a refused SEG is not fetched again, a newer one is read."""
    from oncolabel.dicom_seg import segmentation_dataset, series_headers
    from oncolabel.pacs import DicomWebSource
    from oncolabel.server.datastore import OncoDatastore
    from oncolabel.server.pacs_mirror import PacsMirror

    plain = realdata("dcmqi", "segmentations", "ct-3slice")
    others = [tilted_dicom_copy(tmp_path / f"copy{i}", 0.0, new_uids=True) for i in range(2)]
    orthanc.upload(plain, *others, realdata("dcmqi", "segmentations", "partial_overlaps.dcm"))
    studies = tmp_path / "studies"
    studies.mkdir()
    mirror = PacsMirror(DicomWebSource(orthanc.dicomweb), studies, poll_s=0, labels=True, max_series=2)
    first = mirror.run_once()
    assert len(first.imported) == 2 and len(first.deferred) == 1
    uid = _series_uid(plain)
    assert set(OncoDatastore(str(studies)).list_images()) == set(first.imported)
    assert first.imported[0] == uid and "overlap" in mirror.labels_refused[uid]  # dcmqi's UID sorts first
    mirror._write_status()
    restarted = PacsMirror(DicomWebSource(orthanc.dicomweb), studies, poll_s=0, labels=True, max_series=2)
    second = restarted.run_once()
    assert second.imported == [] and second.deferred == first.deferred  # the limit holds across a restart
    assert json.loads((studies / ".oncolabel" / "pacs_mirror.json").read_text())["deferred"] == first.deferred
    more = PacsMirror(DicomWebSource(orthanc.dicomweb), studies, poll_s=0, labels=True, max_series=3)
    assert more.run_once().imported == first.deferred
    assert "overlap" in more.labels_refused[uid]
    annotation = _boxed_label(read_image(plain))
    orthanc.upload(_write(segmentation_dataset(annotation, series_headers(plain), segments={1: "metastasis"},
                                               manual=True, algorithm="reader", version="1"), tmp_path / "r.dcm"))
    more.run_once()
    assert uid in more.labels_imported and uid not in more.labels_refused
    datastore = OncoDatastore(str(studies))
    assert np.array_equal(sitk.GetArrayFromImage(read_image(datastore.get_label_uri(uid, "final"))),
                          sitk.GetArrayFromImage(annotation))
    with pytest.raises(InvalidInputError, match="most PACS series -1"):
        PacsMirror(DicomWebSource(orthanc.dicomweb), studies, max_series=-1)


def _pet_with_suv_headers(folder: Path, *, weight: float | None = 70.0) -> Path:
    """The real NEMA PET series (Philips, MONOCHROME1, anonymised without SUV headers) with the headers SUV needs
    (BQML, decay-corrected to the scan start, 370 MBq of F-18 one hour before; ``weight`` None: no weight)."""
    import pydicom
    from pydicom.dataset import Dataset

    folder.mkdir(parents=True)
    for f in sorted(realdata("pet_nema_iq_pynemaiqpet", "pet_recon_1").glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.Units, ds.DecayCorrection = "BQML", "START"
        ds.SeriesDate = ds.AcquisitionDate = "20240101"
        ds.SeriesTime = ds.AcquisitionTime = "100000"
        if weight is not None:
            ds.PatientWeight = weight
        drug = Dataset()
        drug.RadionuclideTotalDose, drug.RadionuclideHalfLife = 370e6, 6586.2
        drug.RadiopharmaceuticalStartTime = "090000"
        ds.RadiopharmaceuticalInformationSequence = [drug]
        ds.save_as(folder / f.name)
    return folder


def test_a_pet_series_from_the_pacs_arrives_in_suv(tmp_path, orthanc, capsys):
    """``pacs-import --modality PT``: the headers SUV needs do not survive a NIfTI file, so the PET is converted at
    import (before: its Bq/ml values were written and `infer pet-lymphoma` then asked for --suv-scale); the file
    declares SUVbw and equals the DICOM folder read in SUV; a PET without the patient's weight is refused, named."""
    from oncolabel.pet import declares_suv, read_suv

    pet = _pet_with_suv_headers(tmp_path / "pet")
    no_weight = _pet_with_suv_headers(tmp_path / "no_weight", weight=None)
    import pydicom
    from pydicom.uid import generate_uid

    series_uid = generate_uid()  # the second copy: another series of the same study
    for f in no_weight.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series_uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(f)
    orthanc.upload(pet, no_weight, realdata("dcmqi", "segmentations", "ct-3slice"))
    out = tmp_path / "cohort"
    assert main(["pacs-import", orthanc.dicomweb, "--out", str(out), "--modality", "PT"]) == 0
    captured = capsys.readouterr()
    assert "1 series imported, 0 already there, 1 refused" in captured.out
    assert f"series {series_uid} not imported" in captured.err and "PatientWeight" in captured.err
    uid = _series_uid(pet)
    imported = read_image(out / f"{uid}.nii.gz")
    expected, _ = read_suv(pet)
    assert declares_suv(imported)
    check_same_geometry(expected, imported)
    assert np.allclose(sitk.GetArrayFromImage(imported), sitk.GetArrayFromImage(expected), rtol=1e-6)
    assert 0.5 < float(sitk.GetArrayFromImage(imported).max()) < 200  # SUV, not Bq/ml
    record = json.loads((out / "pacs_series.json").read_text())[uid]
    assert record["values"] == "SUVbw" and record["suv"]["method"].startswith("BQML") and record["modality"] == "PT"
    # several modalities in one import; 'any' passes over series that hold no image (a SEG was fetched and refused)
    orthanc.upload(realdata("dcmqi", "segmentations", "liver.dcm"))
    ct_uid, seg_uid = _series_uid(realdata("dcmqi", "segmentations", "ct-3slice")), _series_uid(
        realdata("dcmqi", "segmentations", "liver.dcm"))
    for modality in ("CT,PT", "any"):
        report = tmp_path / f"{modality}.json"
        assert main(["pacs-import", orthanc.dicomweb, "--out", str(tmp_path / modality), "--modality", modality,
                     "--json", str(report)]) == 0
        written = json.loads(report.read_text())
        assert sorted(written["imported"]) == sorted([uid, ct_uid]) and list(written["refused"]) == [series_uid]
        assert seg_uid not in capsys.readouterr().err
    assert declares_suv(read_image(tmp_path / "any" / f"{uid}.nii.gz"))
    assert not declares_suv(read_image(tmp_path / "any" / f"{ct_uid}.nii.gz"))
    assert main(["pacs-import", orthanc.dicomweb, "--out", str(tmp_path / "bad"), "--modality", "C-T"]) == 1
    assert "give DICOM modality codes" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_the_mirror_waits_for_a_series_still_arriving(tmp_path, orthanc, capsys):
    """A PACS receives a series over minutes: the mirror imported whatever part of it was there at its poll (here 2
    of 3 slices, a regular volume), for good. It now imports a series once its instance count is the same at two
    successive polls."""
    from oncolabel.pacs import DicomWebSource
    from oncolabel.server.datastore import OncoDatastore
    from oncolabel.server.pacs_mirror import PacsMirror

    arriving = tilted_dicom_copy(tmp_path / "arriving", 0.0, new_uids=True)
    files = sorted(arriving.glob("*.dcm"))
    orthanc.upload(*files[:2])
    studies = tmp_path / "studies"
    studies.mkdir()
    mirror = PacsMirror(DicomWebSource(orthanc.dicomweb), studies, poll_s=60)
    uid = _series_uid(arriving)
    assert mirror.run_once().waiting == [uid] and OncoDatastore(str(studies)).list_images() == []
    orthanc.upload(files[2])  # the last slice arrives
    assert mirror.run_once().waiting == [uid]  # 2 -> 3 instances since the previous poll
    assert mirror.run_once().imported == [uid]  # 3 and 3
    image = read_image(OncoDatastore(str(studies)).get_image_uri(uid))
    _same_volume(read_image(arriving), image)
    assert mirror.status()["waiting"] == []
    from dataclasses import replace

    from oncolabel.errors import ImageReadError

    listed = next(s for s in DicomWebSource(orthanc.dicomweb).find_series() if s.series_uid == uid)
    assert listed.n_instances == 3  # a series short of instances is refused, by itself (the others go on)
    with pytest.raises(ImageReadError, match=f"series {uid}: 3 of the 4 instances its search listed were retr"):
        DicomWebSource(orthanc.dicomweb).fetch_image(replace(listed, n_instances=4))  # one lost on the way
    # the headless import: --settle-s lists, waits, and leaves a series whose count changed meanwhile
    import threading

    later = tilted_dicom_copy(tmp_path / "later", 0.0, new_uids=True)
    files = sorted(later.glob("*.dcm"))
    orthanc.upload(*files[:2])
    threading.Timer(0.5, orthanc.upload, args=(files[2],)).start()  # arrives while the import waits
    out = tmp_path / "cohort"
    assert main(["pacs-import", orthanc.dicomweb, "--out", str(out), "--settle-s", "3"]) == 0
    printed = capsys.readouterr().out  # the settled series imported, the other named as still arriving
    assert "1 series imported, 0 already there, 0 refused" in printed and "; 1 still arriving" in printed
    assert not (out / f"{_series_uid(later)}.nii.gz").exists()
    assert main(["pacs-import", orthanc.dicomweb, "--out", str(out), "--settle-s", "0.5"]) == 0
    assert "1 series imported, 1 already there" in capsys.readouterr().out
    _same_volume(read_image(later), read_image(out / f"{_series_uid(later)}.nii.gz"))
    assert main(["pacs-import", orthanc.dicomweb, "--out", str(out), "--settle-s", "-1"]) == 1
