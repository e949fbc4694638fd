"""PET: reading DICOM series correctly and converting stored values to SUV from the DICOM headers.

Reading
-------
:func:`read_pet_dicom` reads a PET series with pydicom: value = ``pixel_array * RescaleSlope + RescaleIntercept``
per slice (the slope differs from slice to slice on most scanners), slices ordered along the slice normal. GDCM,
and hence SimpleITK's series reader, *inverts* MONOCHROME1 images (it returns ``max - value``); many PET exports are
MONOCHROME1; :func:`oncolabel.io.read_image` therefore reads MONOCHROME1 series through the same pydicom reader
(:func:`oncolabel.io.read_dicom_volume`), but only :func:`read_pet_dicom` keeps the headers SUV needs.

SUV
---
Body-weight SUV (Kinahan & Fletcher, Semin Ultrasound CT MR 2010;31:496; QIBA FDG-PET/CT profile, vendor-neutral
pseudo-code "SUV calculation")::

    SUVbw = C(t) [Bq/ml] * weight [g] / (injected dose [Bq] * 2^(-(t_scan - t_injection) / T_half))

:func:`suv_scale_factor` returns ``weight / decayed dose`` (multiply stored values, already in Bq/ml after the rescale,
by it). It follows the logic of cornerstonejs/calculate-suv (MIT), and reproduces its expected factors for its eight
real scanner headers to better than 1e-6:

* ``Units`` ``BQML``: decay from injection (``RadiopharmaceuticalStartDateTime``, else ``RadiopharmaceuticalStartTime``
  on ``SeriesDate``) to the scan time, which is the series date/time unless that is later than the earliest
  acquisition date/time (Siemens re-stamps series), then that acquisition time; a GE private post-injection date/time
  wins when present.
* ``CNTS`` (Philips): the private SUV scale factor (7053,1000) when present, else the private activity-concentration
  factor (7053,1009) times the BQML factor.
* ``GML``: the values are already SUVbw (factor 1).

``CorrectedImage`` must contain ``ATTN`` and ``DECY`` and ``DecayCorrection`` must be ``START`` (decay corrected to
the scan start); anything missing raises :class:`SuvUnavailableError` naming what is missing.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import SimpleITK as sitk

from oncolabel.errors import InvalidInputError

__all__ = ["SuvUnavailableError", "SuvFactor", "PetSeries", "suv_scale_factor", "headers_from_dataset",
           "read_pet_dicom", "read_suv_dicom", "SUV_UNITS_TAG", "mark_suv", "declares_suv", "read_suv"]

#: metadata key/value OncoLabel writes into NIfTI ``descrip`` / NRRD key-value pairs of images holding SUVbw
SUV_UNITS_TAG = "units=SUVbw"


class SuvUnavailableError(InvalidInputError):
    """The headers lack what SUV needs (the message names the missing or unusable fields)."""


@dataclass(frozen=True)
class SuvFactor:
    """Stored value (after rescale) x ``factor`` = SUVbw.

    Attributes:
        factor: the scale factor (g/Bq for Bq/ml data).
        method: how it was obtained (``BQML decay-corrected``, ``Philips SUV scale factor``, ...).
        decay_seconds: injection-to-scan time used (None when not used).
        scan_time, injection_time: ISO date-times used (None when not used).
    """

    factor: float
    method: str
    decay_seconds: float | None = None
    scan_time: str | None = None
    injection_time: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"factor": self.factor, "method": self.method, "decay_seconds": self.decay_seconds,
                "scan_time": self.scan_time, "injection_time": self.injection_time}


# --- DICOM date/time parsing ---------------------------------------------------------------------------------


def _parse_da(value: str) -> _dt.date:
    v = str(value).strip().replace(".", "").replace("-", "")
    return _dt.date(int(v[0:4]), int(v[4:6]), int(v[6:8]))


def _parse_tm(value: str) -> _dt.timedelta:
    """DICOM TM (``HHMMSS.FFFFFF``, parts optional, or ``HH:MM:SS``) as time since midnight."""
    v = str(value).strip().replace(":", "")
    whole, _, frac = v.partition(".")
    hh = int(whole[0:2])
    mm = int(whole[2:4]) if len(whole) >= 4 else 0
    ss = int(whole[4:6]) if len(whole) >= 6 else 0
    micro = float("0." + frac) if frac else 0.0
    return _dt.timedelta(hours=hh, minutes=mm, seconds=ss + micro)


def _combine(date: str, time: str) -> _dt.datetime:
    return _dt.datetime.combine(_parse_da(date), _dt.time()) + _parse_tm(time)


def _parse_dt(value: str) -> _dt.datetime:
    """DICOM DT ``YYYYMMDDHHMMSS.FFFFFF`` (a UTC offset, if any, is ignored: both times come from one scanner)."""
    v = str(value).strip()
    for sign in ("+", "-"):
        if sign in v[8:]:
            v = v[: 8 + v[8:].index(sign)]
    return _combine(v[:8], v[8:] or "000000")


def _require(h: Mapping[str, Any], names: Sequence[str], what: str) -> None:
    missing = [n for n in names if h.get(n) in (None, "", [])]
    if missing:
        raise SuvUnavailableError(f"cannot compute SUV ({what}): the DICOM headers lack {', '.join(missing)}")


def _scan_time(instances: Sequence[Mapping[str, Any]]) -> _dt.datetime:
    first = instances[0]
    _require(first, ("SeriesDate", "SeriesTime"), "scan time")
    series = _combine(first["SeriesDate"], first["SeriesTime"])
    acquisitions = [_combine(i["AcquisitionDate"], i["AcquisitionTime"]) for i in instances
                    if i.get("AcquisitionDate") and i.get("AcquisitionTime")]
    if not acquisitions:
        raise SuvUnavailableError("cannot compute SUV (scan time): no AcquisitionDate/AcquisitionTime in the headers")
    earliest = min(acquisitions)
    if series <= earliest:
        return series
    if first.get("GEPrivatePostInjectionDateTime"):
        return _parse_dt(first["GEPrivatePostInjectionDateTime"])
    return earliest


def _injection_time(first: Mapping[str, Any]) -> _dt.datetime:
    if first.get("RadiopharmaceuticalStartDateTime"):
        return _parse_dt(first["RadiopharmaceuticalStartDateTime"])
    if first.get("RadiopharmaceuticalStartTime") and first.get("SeriesDate"):
        return _combine(first["SeriesDate"], first["RadiopharmaceuticalStartTime"])
    raise SuvUnavailableError("cannot compute SUV: the headers give no injection time "
                              "(RadiopharmaceuticalStartDateTime / RadiopharmaceuticalStartTime)")


def _bqml_factor(instances: Sequence[Mapping[str, Any]]) -> tuple[float, float, _dt.datetime, _dt.datetime]:
    first = instances[0]
    _require(first, ("RadionuclideTotalDose", "RadionuclideHalfLife", "PatientWeight"), "BQML data")
    dose, half_life, weight = (float(first[k]) for k in ("RadionuclideTotalDose", "RadionuclideHalfLife",
                                                         "PatientWeight"))
    if dose <= 0 or half_life <= 0 or weight <= 0:
        raise SuvUnavailableError(f"cannot compute SUV: injected dose {dose} Bq, half-life {half_life} s and "
                                  f"patient weight {weight} kg must all be positive")
    scan, injection = _scan_time(instances), _injection_time(first)
    decay = (scan - injection).total_seconds()
    if decay < 0:
        raise SuvUnavailableError(f"cannot compute SUV: the injection time {injection.isoformat()} is after the scan "
                                  f"time {scan.isoformat()}")
    decayed_dose = dose * math.pow(2.0, -decay / half_life)
    return weight * 1000.0 / decayed_dose, decay, scan, injection


def _float_or_none(value: Any) -> float | None:
    try:
        v = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return v if v != 0 and math.isfinite(v) else None


def suv_scale_factor(instances: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> SuvFactor:
    """SUVbw scale factor from PET header fields (one dict per instance, calculate-suv's field names).

    Args:
        instances: header dicts (see :func:`headers_from_dataset`); the series-level fields of the first are used.

    Raises:
        SuvUnavailableError: the headers lack a field SUV needs, or the data are not attenuation- and decay-corrected.
    """
    if isinstance(instances, Mapping):
        instances = [instances]
    if not instances:
        raise SuvUnavailableError("cannot compute SUV: no PET header given")
    first = instances[0]
    corrected = [str(c).strip().upper() for c in (first.get("CorrectedImage") or [])]
    if "ATTN" not in corrected or "DECY" not in corrected:
        raise SuvUnavailableError(f"cannot compute SUV: CorrectedImage {corrected or 'missing'} must contain ATTN and "
                                  "DECY (attenuation- and decay-corrected data)")
    decay_ref = str(first.get("DecayCorrection") or "").strip().upper()
    if decay_ref and decay_ref != "START":
        raise SuvUnavailableError(f"cannot compute SUV: DecayCorrection {decay_ref!r} (only START is supported)")
    units = str(first.get("Units") or "").strip().upper()
    if units == "BQML":
        factor, decay, scan, inj = _bqml_factor(instances)
        return SuvFactor(factor, "BQML, body weight, decay-corrected to the scan time", decay, scan.isoformat(),
                         inj.isoformat())
    if units == "CNTS":
        private = first.get("PhilipsPETPrivateGroup") or {}
        suv = _float_or_none(private.get("SUVScaleFactor"))
        if suv is not None:
            return SuvFactor(suv, "Philips private SUV scale factor (7053,1000)")
        activity = _float_or_none(private.get("ActivityConcentrationScaleFactor"))
        if activity is not None:
            factor, decay, scan, inj = _bqml_factor(instances)
            return SuvFactor(activity * factor, "Philips activity-concentration factor (7053,1009) x BQML factor",
                             decay, scan.isoformat(), inj.isoformat())
        raise SuvUnavailableError("cannot compute SUV: Units CNTS without the Philips private SUV or activity-"
                                  "concentration scale factor")
    if units == "GML":
        return SuvFactor(1.0, "Units GML: values are already SUVbw")
    if not units:
        _require(first, ("Units", "RadionuclideTotalDose", "RadionuclideHalfLife", "PatientWeight"), "no Units")
    raise SuvUnavailableError(f"cannot compute SUV: Units {units or 'missing'} (supported: BQML, CNTS with Philips "
                              "private factors, GML)")


def headers_from_dataset(ds: Any) -> dict[str, Any]:
    """The SUV-relevant fields of a pydicom dataset, in calculate-suv's naming (absent fields left out)."""
    out: dict[str, Any] = {}
    for name in ("SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime", "PatientWeight", "PatientSex",
                 "PatientSize", "Units", "DecayCorrection", "CorrectedImage", "FrameReferenceTime",
                 "ActualFrameDuration"):
        value = ds.get(name)
        if value in (None, ""):
            continue
        if name == "CorrectedImage":  # multi-valued CS: a single value comes back as a plain string
            value = [value] if isinstance(value, str) else list(value)
        out[name] = value
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if seq:
        item = seq[0]
        for name in ("RadionuclideTotalDose", "RadionuclideHalfLife", "RadiopharmaceuticalStartTime",
                     "RadiopharmaceuticalStartDateTime"):
            value = item.get(name)
            if value not in (None, ""):
                out[name] = value
    private: dict[str, Any] = {}
    for tag, key in ((0x70531000, "SUVScaleFactor"), (0x70531009, "ActivityConcentrationScaleFactor")):
        if tag in ds:
            raw = ds[tag].value
            private[key] = raw.decode(errors="ignore") if isinstance(raw, bytes) else raw
    out["PhilipsPETPrivateGroup"] = private
    if 0x0009100D in ds:  # GE private post-injection date/time
        raw = ds[0x0009100D].value
        out["GEPrivatePostInjectionDateTime"] = raw.decode(errors="ignore") if isinstance(raw, bytes) else raw
    for k in ("PatientWeight", "RadionuclideTotalDose", "RadionuclideHalfLife", "PatientSize"):
        if k in out:
            out[k] = float(out[k])
    return {k: (str(v) if k.endswith(("Date", "Time", "DateTime")) else v) for k, v in out.items()}


@dataclass
class PetSeries:
    """A PET series read with pydicom.

    Attributes:
        image: float32 image of the stored values after each slice's rescale (Bq/ml for ``Units`` BQML).
        headers: SUV-relevant header fields, one dict per slice (see :func:`headers_from_dataset`).
        photometric: PhotometricInterpretation of the files (MONOCHROME1 is *not* inverted: PET values are
            quantities, only their display is inverted).
    """

    image: sitk.Image
    headers: list[dict[str, Any]] = field(default_factory=list)
    photometric: str = ""

    def suv_factor(self) -> SuvFactor:
        return suv_scale_factor(self.headers)


def read_pet_dicom(folder: str | Path) -> PetSeries:
    """Read one PET DICOM series from ``folder`` with pydicom (see the module docstring).

    Raises:
        ImageReadError: no readable PET slice, several series, another modality, or slices that do not form a
            regular volume.
    """
    from oncolabel.io import read_dicom_volume

    vol = read_dicom_volume(folder, modality="PT")
    return PetSeries(image=vol.image, headers=[headers_from_dataset(ds) for ds in vol.datasets],
                     photometric=vol.photometric)


def read_suv_dicom(folder: str | Path, *, suv_scale: float | None = None) -> tuple[sitk.Image, dict[str, Any]]:
    """A PET DICOM series in SUVbw (marked as such, :func:`mark_suv`), and how its values were obtained: the factor
    from its headers (:func:`suv_scale_factor`), or ``suv_scale`` when given.

    Raises:
        ImageReadError: see :func:`read_pet_dicom`.
        SuvUnavailableError: no ``suv_scale`` and the headers lack what SUV needs (the message names it).
    """
    series = read_pet_dicom(folder)
    if suv_scale is None:
        factor = series.suv_factor()
        info = {"source": "DICOM headers", "photometric": series.photometric, **factor.to_dict()}
        scale = factor.factor
    else:
        info, scale = {"source": "user-given scale factor", "factor": suv_scale}, suv_scale
    return mark_suv(sitk.Cast(series.image * scale, sitk.sitkFloat32)), info


# --- images that already hold SUV ----------------------------------------------------------------------------------


def mark_suv(image: sitk.Image) -> sitk.Image:
    """Tag ``image`` as holding SUVbw: NIfTI ``descrip`` (via ITK_FileNotes) and an NRRD ``units`` field."""
    image.SetMetaData("ITK_FileNotes", SUV_UNITS_TAG)
    image.SetMetaData("units", "SUVbw")
    return image


def declares_suv(image: sitk.Image) -> bool:
    """True when the file's metadata declares SUVbw values (see :func:`mark_suv`)."""
    for key in ("descrip", "ITK_FileNotes", "units"):
        if image.HasMetaDataKey(key) and "suvbw" in image.GetMetaData(key).strip().lower().replace(" ", ""):
            return True
    return False


def read_suv(path: str | Path, *, suv_scale: float | None = None) -> tuple[sitk.Image, dict[str, Any]]:
    """A PET volume in SUVbw, and how its values were obtained.

    * a DICOM folder: read with :func:`read_pet_dicom`; SUV factor from the headers (:func:`suv_scale_factor`), or
      ``suv_scale`` when given (it then overrides the headers);
    * a NIfTI / NRRD file declaring SUVbw (:func:`declares_suv`): used as is (``suv_scale`` must not be given);
    * any other file: ``suv_scale`` (stored value x factor = SUV) is required.

    Raises:
        SuvUnavailableError: SUV cannot be established; the message says to pass ``--suv-scale``.
    """
    from oncolabel.io import read_image

    p = Path(path)
    if suv_scale is not None and not (math.isfinite(suv_scale) and suv_scale > 0):
        raise InvalidInputError(f"suv scale {suv_scale!r}: must be a positive number (stored value x factor = SUV)")
    if p.is_dir():
        try:
            return read_suv_dicom(p, suv_scale=suv_scale)
        except SuvUnavailableError as exc:
            raise SuvUnavailableError(f"{p}: {exc}; pass --suv-scale FACTOR (stored value x FACTOR = SUV) if you "
                                      "know it") from exc
    raw = read_image(p)
    image = sitk.Cast(raw, sitk.sitkFloat32)  # (a cast drops the metadata: ask the file's image)
    if declares_suv(raw):
        if suv_scale is not None:
            raise InvalidInputError(f"{p} already holds SUVbw (its metadata says so); do not pass a scale factor")
        return mark_suv(image), {"source": "file declares SUVbw", "factor": 1.0}
    if suv_scale is None:
        raise SuvUnavailableError(f"{p}: the file does not say its values are SUV and has no DICOM headers to compute "
                                  "SUV from; pass --suv-scale FACTOR (stored value x FACTOR = SUV), e.g. 1 if it "
                                  "already holds SUVbw")
    return mark_suv(image * suv_scale), {"source": "user-given scale factor", "factor": suv_scale}
