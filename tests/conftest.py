"""Shared fixtures: seeded synthetic CT volumes written to real files."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "realdata"


def realdata(*parts: str) -> Path:
    """Path under ../shared/realdata, skipping the test with a reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real-data fixture {p} not available (../shared/realdata is absent on this machine)")
    return p


def toy_ct(seed: int = 0, *, shape=(12, 96, 96), spacing=(1.5, 1.5, 3.0), lesion: bool = True):
    """A tiny torso-like CT (HU) with a vertebra and optionally one lytic lesion; returns (image, label)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]]
    cy, cx = shape[1] / 2, shape[2] / 2
    img = np.full(shape, -1000.0, np.float32)
    body = ((y - cy) / (0.38 * shape[1])) ** 2 + ((x - cx) / (0.45 * shape[2])) ** 2 < 1
    img[body] = 40.0
    vy = cy + 0.22 * shape[1]
    spine = ((y - vy) / 9) ** 2 + ((x - cx) / 9) ** 2 < 1
    img[spine] = 250.0
    img[spine & ~(((y - vy) / 7.5) ** 2 + ((x - cx) / 7.5) ** 2 < 1)] = 800.0
    lab = np.zeros(shape, np.uint8)
    if lesion:
        les = ((z - shape[0] // 2) * spacing[2]) ** 2 + ((y - vy) * spacing[1]) ** 2 + ((x - cx) * spacing[0]) ** 2 < 7.0 ** 2
        les &= spine
        img[les] = 30.0
        lab[les] = 1
    img += rng.normal(0, 10, shape).astype(np.float32)
    image = sitk.GetImageFromArray(img.astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin((-70.0, -60.0, 12.5))
    label = sitk.GetImageFromArray(lab)
    label.CopyInformation(image)
    return image, label


def tilted_dicom_copy(folder, degrees, *, monochrome1=False, new_uids=False):
    """dcmqi's real 3-slice CT series (1 mm apart) as a gantry-tilted scanner stores it: image planes tilted about
    the patient's left-right axis, positions still stepping along the table (z) as they do in the original
    (``new_uids``: another series, as a PACS must hold it next to the original)."""
    import pydicom
    from pydicom.uid import generate_uid

    folder.mkdir()
    t = np.radians(degrees)
    series_uid = generate_uid()
    for path in sorted(realdata("dcmqi", "segmentations", "ct-3slice").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(-np.sin(t))]
        ds.GantryDetectorTilt = degrees
        if monochrome1:
            ds.PhotometricInterpretation = "MONOCHROME1"
        if new_uids:
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(folder / path.name)
    return folder


def multiframe_dicom_copy(folder, *, order=None, name="ct.dcm"):
    """dcmqi's real 3-slice CT series converted into one multi-frame file (highdicom's Legacy Converted Enhanced CT:
    per-frame positions in functional groups, as PACS conversions and enhanced-CT scanners store a series), frames
    optionally stored in another ``order`` (DICOM orders frames by their dimension index, not by position)."""
    import warnings

    import highdicom as hd
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    slices = [pydicom.dcmread(p) for p in sorted(realdata("dcmqi", "segmentations", "ct-3slice").glob("*.dcm"))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # highdicom on the anonymised patient name
        ds = hd.legacy.LegacyConvertedEnhancedCTImage(slices, series_instance_uid=hd.UID(), series_number=99,
                                                      sop_instance_uid=hd.UID(), instance_number=1)
    if order is not None:
        frames = ds.pixel_array
        ds.PixelData = np.ascontiguousarray(frames[list(order)]).tobytes()
        ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence([ds.PerFrameFunctionalGroupsSequence[i] for i in order])
    ds.save_as(folder / name)
    return folder / name


def label_slices_by_instance(label: sitk.Image, folder: Path) -> dict:
    """SOPInstanceUID -> the slice of ``label`` under that instance of the DICOM series in ``folder``, placed by ITK
    from the instance's own position (independent of OncoLabel's DICOM SEG code)."""
    import pydicom

    arr = sitk.GetArrayFromImage(label)
    out = {}
    for f in sorted(Path(folder).glob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        index = label.TransformPhysicalPointToIndex([float(v) for v in ds.ImagePositionPatient])
        assert index[:2] == (0, 0), f"{f.name} lies off the label's grid"
        out[str(ds.SOPInstanceUID)] = arr[index[2]]
    return out


class Orthanc:
    """A running Orthanc PACS (see the ``orthanc`` fixture)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.dicomweb = f"{root}/dicom-web"

    def upload(self, *paths: Path) -> int:
        """Store DICOM files (each path a file or a folder of files) through Orthanc's REST API; returns how many."""
        import requests

        files = [f for p in paths for f in (sorted(Path(p).iterdir()) if Path(p).is_dir() else [Path(p)])]
        for f in files:
            r = requests.post(f"{self.root}/instances", data=f.read_bytes(), timeout=30)
            r.raise_for_status()
        return len(files)


@pytest.fixture(autouse=True)
def _process_locale():
    """Restore the process locale after each test: ITK's GDCM writer (SimpleITK writing a DICOM slice with an
    ImagePositionPatient, as some tests build series) leaves LC_ALL at "C", after which Python's default text encoding
    is ASCII and a later test reading UTF-8 text without naming the encoding failed, depending on test order."""
    import locale

    before = locale.setlocale(locale.LC_ALL)
    yield
    if locale.setlocale(locale.LC_ALL) != before:
        locale.setlocale(locale.LC_ALL, before)


@pytest.fixture
def orthanc(tmp_path_factory):
    """A real Orthanc PACS with its DICOMweb plugin on 127.0.0.1 (an empty database per test; remote access and the
    DICOM port off). Skips when Orthanc is not installed."""
    import json
    import shutil
    import subprocess
    import time

    import requests

    from oncolabel.server.process import free_port

    exe = shutil.which("Orthanc")
    plugins = [Path(d) / "libOrthancDicomWeb.so" for d in ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins",
                                                           "/usr/local/share/orthanc/plugins")]
    plugin = next((p for p in plugins if p.exists()), None)
    if exe is None or plugin is None:
        pytest.skip("Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb; "
                    "scripts/setup.sh installs them when run as root)")
    root = tmp_path_factory.mktemp("orthanc")
    port = free_port()
    config = {"Name": "OncoLabelTest", "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": False, "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
              "Plugins": [str(plugin)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
    (root / "orthanc.json").write_text(json.dumps(config))
    log = open(root / "orthanc.log", "wb")
    proc = subprocess.Popen([exe, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/system", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not start: {(root / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield Orthanc(url)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def write_toy_items(folder: Path, seeds) -> list[dict[str, str]]:
    """Toy CT cases (one lesion each) written to ``folder`` as ``{"image", "label"}`` training items."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for seed in seeds:
        image, label = toy_ct(seed)
        ip, lp = folder / f"c{seed}.nii.gz", folder / f"c{seed}_label.nii.gz"
        sitk.WriteImage(image, str(ip))
        sitk.WriteImage(label, str(lp))
        items.append({"image": str(ip), "label": str(lp)})
    return items


@pytest.fixture
def toy_pair(tmp_path: Path):
    """(image path, label path) of a toy CT with one lesion, written as NIfTI."""
    image, label = toy_ct(0)
    ip, lp = tmp_path / "case.nii.gz", tmp_path / "case_label.nii.gz"
    sitk.WriteImage(image, str(ip))
    sitk.WriteImage(label, str(lp))
    return ip, lp


@pytest.fixture(scope="session")
def toy_checkpoint(tmp_path_factory) -> Path:
    """A briefly trained bone-metastasis checkpoint on toy volumes (contract tests, not accuracy)."""
    from oncolabel.checkpoint import save_checkpoint
    from oncolabel.tasks import get_task
    from oncolabel.training import Trainer

    root = tmp_path_factory.mktemp("toyckpt")
    items = write_toy_items(root, range(2))
    result = Trainer(get_task("bone_metastasis"), iterations=20, batch_size=4, seed=0).fit(items)
    return save_checkpoint(result.checkpoint, root / "toy.pt")


def cd_export(dest: Path, series: Sequence[tuple[Path, dict]]) -> Path:
    """A CD/DVD export as scanners and PACS viewers burn it: a DICOMDIR indexing PT*/ST*/SE* folders of files without
    a suffix (pydicom's File-set writer), holding copies of the real DICOM series in ``series`` (folder, header
    values to set); each copy gets its own series and instance UIDs."""
    import pydicom
    from pydicom.fileset import FileSet
    from pydicom.uid import generate_uid

    fs = FileSet()
    for folder, values in series:
        uid = generate_uid()
        for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID = uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            for key, value in values.items():
                setattr(ds, key, value)
            for key, value in (("PatientID", "ANON"), ("StudyDate", "20200101"), ("StudyTime", "120000"),
                               ("StudyID", "1"), ("SeriesNumber", 1), ("InstanceNumber", 1)):
                if key not in ds:  # elements a DICOMDIR's records need, absent from some public test files
                    setattr(ds, key, value)
            fs.add(ds)
    fs.write(dest)
    return dest


def real_rtstruct(dest: Path | None = None):
    """pydicom's real RTSTRUCT test file (structures 'patient': three closed contours at z = -200, -190, -180 mm,
    and two isocentre points), optionally saved as a DICOM Part 10 file as planning systems export it."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("rtstruct.dcm"), force=True)
    if dest is not None:
        _save_part10(ds, dest)
    return ds


def _save_part10(ds, dest: Path) -> None:
    """Save an RTSTRUCT read without its file meta header as a DICOM Part 10 file."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian, RTStructureSetStorage

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTStructureSetStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(dest, enforce_file_format=True)


def rtstruct_boxes(image: sitk.Image, mask: sitk.Image, dest: Path, *, name: str = "GTVp",
                   frame_of_reference: str | None = None) -> sitk.Image:
    """An RTSTRUCT file at ``dest`` as planning systems export it: the real pydicom RTSTRUCT whose first structure,
    renamed ``name``, is replaced by one rectangular contour around ``mask`` on each of its slices (at the pixels'
    outer edges), optionally in the CT series' ``frame_of_reference``; returns the mask those contours enclose (the
    boxes, on ``image``'s grid)."""
    import copy

    ds = real_rtstruct()
    ds.StructureSetROISequence[0].ROIName = name
    if frame_of_reference is not None:
        ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = frame_of_reference
    template = ds.ROIContourSequence[0].ContourSequence[0]
    inside = sitk.GetArrayFromImage(mask) > 0
    contours, box = [], np.zeros_like(inside)
    sx, sy, _ = image.GetSpacing()
    for k in np.flatnonzero(inside.any(axis=(1, 2))):
        rows, cols = np.nonzero(inside[k])
        (x0, y0, z), (x1, y1, _) = (image.TransformIndexToPhysicalPoint((int(c), int(r), int(k)))
                                    for c, r in ((cols.min(), rows.min()), (cols.max(), rows.max())))
        contour = copy.deepcopy(template)
        contour.ContourData = [x0 - sx / 2, y0 - sy / 2, z, x1 + sx / 2, y0 - sy / 2, z, x1 + sx / 2, y1 + sy / 2, z,
                               x0 - sx / 2, y1 + sy / 2, z]
        contour.NumberOfContourPoints = 4
        contours.append(contour)
        box[k, rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
    ds.ROIContourSequence[0].ContourSequence = contours
    _save_part10(ds, dest)
    boxed = sitk.GetImageFromArray(box.astype(np.uint8))
    boxed.CopyInformation(image)
    return boxed
