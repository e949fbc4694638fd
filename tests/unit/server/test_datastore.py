"""OncoDatastore: transactional metadata, label versions, validation (stock LocalDatastore shown losing updates)."""

from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("monailabel")
from oncolabel.server import compat  # noqa: E402

compat.apply()
from monailabel.datastore.local import LocalDatastore  # noqa: E402

from oncolabel.errors import ConflictError, DatastoreError, GeometryError, InvalidInputError, NotFoundError  # noqa: E402
from oncolabel.server.datastore import OncoDatastore  # noqa: E402
from tests.conftest import toy_ct  # noqa: E402


@pytest.fixture
def studies(tmp_path):
    root = tmp_path / "studies"
    root.mkdir()
    for i in range(3):
        image, label = toy_ct(i, shape=(4, 32, 32))
        sitk.WriteImage(image, str(root / f"img{i}.nii.gz"))
        sitk.WriteImage(label, str(tmp_path / f"lab{i}.nii.gz"))
    return root


def _two_writers(cls, root, tmp_path):
    """Two store objects (= two processes) on one folder, each saving a label with info."""
    a, b = cls(str(root)), cls(str(root))
    a.save_label("img0", str(tmp_path / "lab0.nii.gz"), "final", {"reader": "A"})
    b.save_label("img1", str(tmp_path / "lab1.nii.gz"), "final", {"reader": "B"})
    fresh = cls(str(root))
    return {i: fresh.get_label_info(i, "final").get("reader") for i in ("img0", "img1")}


def test_stock_local_datastore_loses_an_update(studies, tmp_path):
    """Documents the upstream bug this store fixes: B's stale copy overwrites A's label info."""
    readers = _two_writers(LocalDatastore, studies, tmp_path)
    assert readers["img0"] is None and readers["img1"] == "B"


def test_oncodatastore_keeps_both_updates(studies, tmp_path):
    assert _two_writers(OncoDatastore, studies, tmp_path) == {"img0": "A", "img1": "B"}


def test_reads_see_another_process_label(studies, tmp_path):
    """A label saved by one store object (another process) is visible to every read path of a second one."""
    reader, writer = OncoDatastore(str(studies)), OncoDatastore(str(studies))
    assert reader.get_labeled_images("final") == []
    writer.save_label("img2", str(tmp_path / "lab2.nii.gz"), "final", {"reader": "W"})
    assert reader.get_labeled_images("final") == ["img2"]
    assert "img2" not in reader.get_unlabeled_images("final")
    assert "final" in reader.get_labels_by_image_id("img2")
    uri = reader.get_label_uri("img2", "final")
    assert uri and sitk.ReadImage(uri).GetSize() == (32, 32, 4)


def _worker(root, worker, n):
    ds = OncoDatastore(root)
    for k in range(n):
        ds.update_image_info(f"img{k % 3}", {f"w{worker}_{k}": k})


def test_concurrent_processes_lose_nothing(studies):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(studies), w, 12)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    data = json.loads((studies / "datastore_v2.json").read_text())
    keys = set()
    for obj in data["objects"].values():
        keys |= {k for k in obj["image"]["info"] if k.startswith("w")}
    assert len(keys) == 24


def test_every_label_version_is_kept(studies, tmp_path):
    ds = OncoDatastore(str(studies))
    first = tmp_path / "lab0.nii.gz"
    second_img = sitk.ReadImage(str(first))
    arr = sitk.GetArrayFromImage(second_img)
    arr[0, :2, :2] = 1
    second = tmp_path / "lab0b.nrrd"
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(second_img)
    sitk.WriteImage(out, str(second))
    ds.save_label("img0", str(first), "final", {"user": "r1"})
    ds.save_label("img0", str(second), "final", {"user": "r2"})
    versions = ds.label_versions("img0", "final")
    assert [v["version"] for v in versions] == [1, 2] and [v["user"] for v in versions] == ["r1", "r2"]
    vdir = studies / ".oncolabel" / "label_versions" / "final" / "img0"
    assert sorted(p.name for p in vdir.glob("v0*")) == ["v0001.nii.gz", "v0002.nrrd"]
    current = sorted(p.name for p in (studies / "labels" / "final").iterdir())
    assert current == ["img0.nrrd"]
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(ds.get_label_uri("img0", "final"))), arr)


def test_a_label_cropped_to_its_segments_is_stored_on_the_image_grid(studies, tmp_path):
    """A Slicer .seg.nrrd cropped to its segment (written by slicerio as Slicer writes it): stored placed on the
    image's grid, its segment name kept, the submitted size and checksum in the version's info."""
    slicerio = pytest.importorskip("slicerio")
    ds = OncoDatastore(str(studies))
    full = sitk.ReadImage(str(tmp_path / "lab0.nii.gz"))
    arr = sitk.GetArrayFromImage(full)
    assert arr.any()
    z, y, x = (np.nonzero(arr)[k] for k in range(3))
    lo, hi = np.array([x.min(), y.min(), z.min()]), np.array([x.max(), y.max(), z.max()]) + 1
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = np.asarray(full.GetDirection()).reshape(3, 3) * np.asarray(full.GetSpacing())
    ijk_to_lps[:3, 3] = full.TransformIndexToPhysicalPoint([int(v) for v in lo])
    seg = slicerio.create_segmentation(tuple(int(v) for v in hi - lo), ijk_to_lps)
    crop = np.transpose(arr[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]], (2, 1, 0)) > 0
    slicerio.add_segment(seg, crop, {"id": "Segment_1", "name": "metastasis"})
    slicerio.write_segmentation(str(tmp_path / "cropped.seg.nrrd"), seg)
    assert sitk.ReadImage(str(tmp_path / "cropped.seg.nrrd")).GetSize() != full.GetSize()
    ds.save_label("img0", str(tmp_path / "cropped.seg.nrrd"), "final", {"user": "r1"})
    stored = ds.get_label_uri("img0", "final")
    assert stored.endswith("img0.seg.nrrd")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(stored)), (arr > 0).astype(np.uint8))
    assert [s["name"] for s in slicerio.read_segmentation(stored, skip_voxels=True)["segments"]] == ["metastasis"]
    placed = ds.label_versions("img0", "final")[0]["placed_on_image_grid"]
    assert placed["submitted_size"] == [int(v) for v in hi - lo] and len(placed["submitted_sha256"]) == 64


def test_refusals_store_nothing(studies, tmp_path):
    ds = OncoDatastore(str(studies))
    before = (studies / "datastore_v2.json").read_text()
    with pytest.raises(DatastoreError):
        ds.save_label("../img0", str(tmp_path / "lab0.nii.gz"), "final", {})
    with pytest.raises(DatastoreError):
        ds.save_label("img0", str(tmp_path / "lab0.nii.gz"), "../x", {})
    with pytest.raises(NotFoundError):
        ds.save_label("nope", str(tmp_path / "lab0.nii.gz"), "final", {})
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"x" * 50)
    with pytest.raises(InvalidInputError):
        ds.save_label("img0", str(bad), "final", {})
    other = sitk.Image(16, 16, 4, sitk.sitkUInt8)
    sitk.WriteImage(other, str(tmp_path / "other.nii.gz"))
    with pytest.raises(GeometryError, match="label for 'img0' spacing"):
        ds.save_label("img0", str(tmp_path / "other.nii.gz"), "final", {})
    txt = tmp_path / "label.txt"
    txt.write_text("1 2 3")
    with pytest.raises(InvalidInputError, match="unsupported file type"):
        ds.save_label("img0", str(txt), "final", {})
    good = sitk.ReadImage(str(tmp_path / "lab0.nii.gz"))
    for name, values, message in (("prob", sitk.Cast(good, sitk.sitkFloat32) * 0.8 + 0.1, "fractional values"),
                                  ("neg", sitk.Cast(good, sitk.sitkInt16) - 1, "negative values")):
        sitk.WriteImage(values, str(tmp_path / f"{name}.nii.gz"))  # a probability map / a shifted label image
        with pytest.raises(InvalidInputError, match=f"label for 'img0' holds {message}"):
            ds.save_label("img0", str(tmp_path / f"{name}.nii.gz"), "final", {})
    with pytest.raises(ConflictError):
        ds.add_image("img1", str(studies / "img2.nii.gz"), {})
    with pytest.raises(DatastoreError):
        ds.add_image("a/../../b", str(studies / "img2.nii.gz"), {})
    assert (studies / "datastore_v2.json").read_text() == before
    assert not (studies / "labels" / "final").exists() or not any((studies / "labels" / "final").iterdir())
    assert not (tmp_path / "x").exists() and not (tmp_path / "b.nii.gz").exists()


def test_add_image_and_reload(studies, tmp_path):
    ds = OncoDatastore(str(studies))
    image, _ = toy_ct(7, shape=(4, 32, 32))
    sitk.WriteImage(image, str(tmp_path / "new.nrrd"))
    assert ds.add_image("new_case", str(tmp_path / "new.nrrd"), {"site": "A"}) == "new_case"
    again = OncoDatastore(str(studies))
    assert "new_case" in again.list_images() and again.get_image_info("new_case")["site"] == "A"
