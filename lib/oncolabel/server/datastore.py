"""A MONAI Label local datastore that loses nothing.

Differences from ``monailabel.datastore.local.LocalDatastore`` (same folder layout, same REST behaviour):

* **Transactions**: every metadata change re-reads ``datastore_v2.json`` from disk under an inter-process file
  lock, applies only its own change and writes the file atomically (temporary file + ``os.replace``). The stock
  store writes its in-memory copy, so two writers (the server and MONAI Label's training subprocess, or two server
  workers) silently drop each other's updates, and a reader can catch a half-written file.
* **Label versions**: each submitted label is kept forever under ``.oncolabel/label_versions/<tag>/<image>/`` with
  a ``versions.json`` (version, time, user, sha256, info); ``labels/<tag>/<image>`` holds the latest version.
* **Validation before anything is stored**: ids and tags must be plain names (no ``/``, ``\\``, ``..``); an
  uploaded image must be a readable 3D image and may not replace an existing image; an uploaded label must be a
  readable image with integer values on the image's grid, or on a part of it (a Slicer ``.seg.nrrd`` cropped to its
  segments: placed on the image's grid voxel for voxel before it is stored, recorded in its info).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import SimpleITK as sitk
from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore, LocalDatastoreModel

from oncolabel.errors import (ConflictError, DatastoreError, ImageReadError, InvalidInputError, NotFoundError,
                              OncoLabelError)
from oncolabel.io import (atomic_path, check_label_values, image_suffix, mask_on_grid, read_image, require_3d,
                          write_label)
from oncolabel.provenance import file_sha256

logger = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_id(value: str, *, what: str = "image id") -> str:
    """``value`` if it is a safe plain name, else :class:`DatastoreError` naming it."""
    if not isinstance(value, str) or not _ID.match(value) or ".." in value:
        raise DatastoreError(f"{what} {value!r} is not allowed: use letters, digits, '_', '-' and '.' only "
                             "(no path separators or '..')")
    return value


class OncoDatastore(LocalDatastore):
    """Versioned, transactional :class:`LocalDatastore` (see module docstring)."""

    def __init__(self, datastore_path: str, *, extensions=("*.nii.gz", "*.nii", "*.nrrd"), auto_reload: bool = False,
                 read_only: bool = False, max_label_values: int = 255,
                 on_final_label: Optional[Callable[[str, Dict[str, Any], str, Dict[str, Any]],
                                                   Dict[str, Any]]] = None) -> None:
        os.makedirs(datastore_path, exist_ok=True)
        self._flock = FileLock(os.path.join(datastore_path, ".lock"))
        self._versions_root = Path(datastore_path) / ".oncolabel" / "label_versions"
        self._max_label_values = max_label_values
        self._on_final_label = on_final_label
        self._disk_key: tuple[int, int, int] | None = None
        super().__init__(datastore_path, extensions=extensions, auto_reload=auto_reload, read_only=read_only)

    # --- persistence ----------------------------------------------------------------------------------------
    def _file_key(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._datastore_config_path)
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino  # every atomic write makes a new inode

    def _init_from_datastore_file(self, throw_exception: bool = False) -> None:  # noqa: D401
        """Reload from disk (under the lock) whenever the file changed since this object last read or wrote it."""
        try:
            with self._flock:
                key = self._file_key()
                if key is not None and key != self._disk_key:
                    with open(self._datastore_config_path) as fp:
                        model = LocalDatastoreModel.model_validate_json(fp.read())
                    model.base_path = self._datastore_path
                    self._datastore = model
                    self._disk_key = key
        except ValueError as exc:
            logger.error("failed to load datastore file %s: %s", self._datastore_config_path, exc)
            if throw_exception:
                raise DatastoreError(f"datastore file {self._datastore_config_path} is unreadable: {exc}") from exc

    def _update_datastore_file(self, lock: bool = True) -> None:
        with self._flock:
            text = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
            with atomic_path(self._datastore_config_path) as tmp:
                with open(tmp, "w") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
            self._disk_key = self._file_key()

    @contextmanager
    def _transaction(self) -> Iterator[LocalDatastoreModel]:
        """Lock, reload from disk, let the caller change the model, write atomically."""
        with self._flock:
            self._init_from_datastore_file()
            try:
                yield self._datastore
            except BaseException:
                self._disk_key = None  # drop any half-applied change: reload from disk
                self._init_from_datastore_file()
                raise
            self._update_datastore_file()

    def _reconcile_datastore(self) -> None:
        with self._flock:
            super()._reconcile_datastore()

    def refresh(self) -> None:
        self._reconcile_datastore()

    # --- validation -----------------------------------------------------------------------------------------
    def _object(self, image_id: str) -> ImageLabelModel:
        check_id(image_id)
        obj = self._datastore.objects.get(image_id)
        if obj is None:
            raise NotFoundError(f"image {image_id!r} is not in the datastore")
        return obj

    @staticmethod
    def _check_image_file(path: str, *, what: str) -> sitk.Image:
        if not image_suffix(path):
            raise InvalidInputError(f"{what}: unsupported file type {Path(path).name!r}; "
                                    "upload NIfTI (.nii, .nii.gz) or NRRD (.nrrd)")
        try:
            img = read_image(path)
        except ImageReadError as exc:
            raise InvalidInputError(f"{what}: {exc}") from exc
        return require_3d(img, what=what)

    def _check_label_file(self, image_id: str, label_path: str) -> tuple[dict[str, Any], sitk.Image | None]:
        """What to record of a submitted label, and the label placed on the image's grid when it was submitted on
        a part of it (:func:`oncolabel.io.mask_on_grid`: a Slicer ``.seg.nrrd`` cropped to its segments), else
        None (the file is stored as submitted)."""
        label = self._check_image_file(label_path, what=f"label for {image_id!r}")
        image = read_image(self.get_image_uri(image_id))
        placed = mask_on_grid(image, label, what=f"label for {image_id!r}")
        arr = sitk.GetArrayViewFromImage(placed)
        check_label_values(arr, what=f"label for {image_id!r}")
        values = np.unique(arr)
        if values.size > self._max_label_values:
            raise InvalidInputError(f"label for {image_id!r} holds {values.size} distinct values "
                                    f"({values[:8].tolist()}...): at most {self._max_label_values} labels expected")
        checked: dict[str, Any] = {"label_values": [int(v) for v in values],
                                   "foreground_voxels": int(np.count_nonzero(arr))}
        if placed is label:
            return checked, None
        checked["placed_on_image_grid"] = {"submitted_size": list(label.GetSize()),
                                           "submitted_origin": [round(v, 4) for v in label.GetOrigin()],
                                           "submitted_sha256": file_sha256(label_path)}
        return checked, placed

    @staticmethod
    def _write_placed(placed: sitk.Image, submitted: str, dest: Path) -> None:
        """Write a label placed on the image's grid in the submitted file's format (a ``.seg.nrrd`` keeps its
        segments' names)."""
        if image_suffix(submitted) != ".seg.nrrd":
            sitk.WriteImage(placed, str(dest), True)
            return
        import slicerio

        segments = {int(s["labelValue"]): str(s.get("name") or s["labelValue"])  # none in a plain NRRD
                    for s in slicerio.read_segmentation(submitted, skip_voxels=True)["segments"]
                    if int(s.get("layer", 0)) == 0 and "labelValue" in s}
        values = np.unique(sitk.GetArrayViewFromImage(placed))
        write_label(placed, dest, segments={int(v): segments.get(int(v), f"label {int(v)}") for v in values if v})

    # --- writes ---------------------------------------------------------------------------------------------
    def add_image(self, image_id: str, image_filename: str, image_info: Dict[str, Any]) -> str:
        _, ext = self._to_id(os.path.basename(image_filename))
        ext = image_suffix(image_filename) or ext
        image_id = image_id or Path(image_filename).name[: -len(ext)]
        check_id(image_id)
        self._check_image_file(image_filename, what=f"image {image_id!r}")
        with self._transaction() as ds:
            if image_id in ds.objects:
                raise ConflictError(f"image {image_id!r} already exists; nothing was overwritten "
                                    "(choose another id or remove the image first)")
            name = self._filename(image_id, ext)
            with atomic_path(Path(self._datastore.image_path()) / name) as tmp:
                shutil.copyfile(image_filename, tmp)
            info = dict(image_info or {})
            info.update({"ts": int(time.time()), "name": name, "sha256": file_sha256(image_filename)})
            ds.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=ext))
        return image_id

    def label_versions(self, image_id: str, tag: str) -> list[dict[str, Any]]:
        """Every stored version of ``image_id``'s label under ``tag`` (oldest first)."""
        check_id(image_id)
        check_id(tag, what="label tag")
        index = self._versions_root / tag / image_id / "versions.json"
        return json.loads(index.read_text()) if index.exists() else []

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any]) -> str:
        check_id(label_tag, what="label tag")
        with self._flock:
            self._init_from_datastore_file()
            self._object(image_id)
        ext = image_suffix(label_filename)
        checked, placed = self._check_label_file(image_id, label_filename)
        with self._transaction() as ds:
            obj = ds.objects.get(image_id)
            if obj is None:
                raise NotFoundError(f"image {image_id!r} was removed while its label was being saved")
            vdir = self._versions_root / label_tag / image_id
            vdir.mkdir(parents=True, exist_ok=True)
            index = vdir / "versions.json"
            versions = json.loads(index.read_text()) if index.exists() else []
            n = len(versions) + 1
            vfile = vdir / f"v{n:04d}{ext}"
            with atomic_path(vfile) as tmp:
                if placed is None:
                    shutil.copyfile(label_filename, tmp)
                else:
                    self._write_placed(placed, label_filename, tmp)
            info = dict(label_info or {})
            info.update({"ts": int(time.time()), "name": self._filename(image_id, ext), "version": n,
                         "sha256": file_sha256(vfile), **checked})
            versions.append({"version": n, "file": vfile.name, **{k: v for k, v in info.items() if k != "name"}})
            with atomic_path(index) as tmp:
                tmp.write_text(json.dumps(versions, indent=2, default=str))
            label_dir = Path(self._datastore.label_path(label_tag))
            label_dir.mkdir(parents=True, exist_ok=True)
            old = obj.labels.get(label_tag)
            with atomic_path(label_dir / self._filename(image_id, ext)) as tmp:
                shutil.copyfile(vfile, tmp)
            if old is not None and old.ext != ext:  # the previous format's file is kept in versions
                (label_dir / self._filename(image_id, old.ext)).unlink(missing_ok=True)
            obj.labels[label_tag] = DataModel(info=info, ext=ext)
        if self._on_final_label is not None and label_tag == "final":
            self._after_final_label(image_id, str(vfile), info)
        return image_id

    def _after_final_label(self, image_id: str, label_path: str, label_info: Dict[str, Any]) -> None:
        """Hand a stored final label to ``on_final_label(image_id, image_info, label_path, label_info)`` (e.g. a
        copy to the PACS); its record, or its error, goes into the label's info. The label is stored before and
        whatever happens here."""
        try:
            record = self._on_final_label(image_id, self.get_image_info(image_id), label_path, label_info)
        except OncoLabelError as exc:
            logger.warning("final label of %s: %s", image_id, exc)
            record = {"error": str(exc)}
        if record:
            self.update_label_info(image_id, "final", record)

    def update_image_info(self, image_id: str, info: Dict[str, Any]) -> None:
        with self._transaction():
            self._object(image_id).image.info.update(info)

    def update_label_info(self, label_id: str, label_tag: str, info: Dict[str, Any]) -> None:
        check_id(label_tag, what="label tag")
        with self._transaction():
            label = self._object(label_id).labels.get(label_tag)
            if label is None:
                raise NotFoundError(f"image {label_id!r} has no label with tag {label_tag!r}")
            label.info.update(info)

    def remove_image(self, image_id: str) -> None:
        with self._flock:
            self._init_from_datastore_file()
            self._object(image_id)
            super().remove_image(image_id)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        check_id(label_id)
        check_id(label_tag, what="label tag")
        with self._flock:
            super().remove_label(label_id, label_tag)

    # --- reads that must see other processes' writes -----------------------------------------------------------
    def datalist(self, full_path: bool = True):
        self._init_from_datastore_file()
        return super().datalist(full_path)

    def get_label_info(self, label_id: str, label_tag: str) -> Dict[str, Any]:
        self._init_from_datastore_file()
        return super().get_label_info(label_id, label_tag)

    def get_image_info(self, image_id: str) -> Dict[str, Any]:
        self._init_from_datastore_file()
        return super().get_image_info(image_id)

    def get_image_uri(self, image_id: str) -> str:
        self._init_from_datastore_file()
        return super().get_image_uri(image_id)

    def get_label_uri(self, label_id: str, label_tag: str) -> str:
        self._init_from_datastore_file()
        return super().get_label_uri(label_id, label_tag)

    def get_labels_by_image_id(self, image_id: str) -> Dict[str, str]:
        self._init_from_datastore_file()
        return super().get_labels_by_image_id(image_id)

    def get_labeled_images(self, label_tag: Optional[str] = None, labels: Optional[List[str]] = None) -> List[str]:
        self._init_from_datastore_file()
        return super().get_labeled_images(label_tag, labels)

    def get_unlabeled_images(self, label_tag: Optional[str] = None, labels: Optional[List[str]] = None) -> List[str]:
        self._init_from_datastore_file()
        return super().get_unlabeled_images(label_tag, labels)

    def list_images(self) -> List[str]:
        self._init_from_datastore_file()
        return super().list_images()

    def json(self):
        self._init_from_datastore_file()
        return super().json()
