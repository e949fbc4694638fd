"""Bone findings drawn into a painted torso: metastases (labelled) and their mimics (not labelled).

Metastases (attenuation after Ulano et al., AJR 2016;207:362 and standard texts):

* **lytic** - bone replaced by tumour of soft-tissue attenuation, 0-100 HU and at least ~90 HU below
  the local cancellous bone; may destroy the cortex and extend a few mm into soft tissue;
* **blastic** - dense, ill-defined sclerosis, 500-1200 HU at the core fading towards the margin
  (untreated osteoblastic metastases average ~760 HU);
* **mixed** - lytic and sclerotic parts in one lesion.

Mimics ("hard negatives"), never labelled:

* **bone island** (enostosis) - 3-10 mm, 1000-1500 HU, sharp round margin (enostoses average
  ~1200 HU, Ulano 2016);
* **endplate sclerosis** with **osteophytes** - degenerative dense bands along an endplate and
  bony spurs at the body margin;
* **Schmorl node** - disc material herniated through the endplate: a small lucent defect with a
  sclerotic rim;
* **hemangioma** - fatty marrow with thickened vertical trabeculae ("polka-dot" sign on axial CT,
  Persaud, Radiology 2008;246:980);
* **vascular calcification** - aortic wall plaques next to the spine (older patients).

Each drawn finding is clipped to one bone (its signed-distance function), never overlaps another
finding, and is described by a JSON-ready dict.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

from oncolabel.phantoms._ct import (
    BONE_TISSUES, Canvas, Coords, CTGrid, Tissue, plane_wave_field, random_rotation, sdf_ellipsoid,
)
from oncolabel.phantoms._skeleton import SITE_WEIGHTS, BoneElement, Skeleton, Vertebra
from oncolabel.phantoms._torso import TorsoModel

LESION_TYPES = ("lytic", "blastic", "mixed")
HARD_NEGATIVE_TYPES = ("bone_island", "endplate_sclerosis", "schmorl_node", "hemangioma")
VERTEBRAL_SITE_CLASSES = ("vertebral body", "pedicle", "posterior elements")
_MAX_TRIES = 20


def _world_box(centre: Sequence[float], half: float) -> tuple[list[float], list[float]]:
    return [c - half for c in centre], [c + half for c in centre]


def _dilate_mm(mask: np.ndarray, spacing_zyx: Sequence[float], r_mm: float) -> np.ndarray:
    """Voxels within ``r_mm`` of ``mask`` (Euclidean, anisotropic voxels)."""
    if not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask, sampling=spacing_zyx) <= r_mm


class FindingPainter:
    """Draws findings into a canvas, keeps the label and an 'occupied' map so findings never touch."""

    def __init__(self, canvas: Canvas, model: TorsoModel, skeleton: Skeleton, *, min_contrast_hu: float) -> None:
        self.canvas, self.m, self.skel = canvas, model, skeleton
        self.grid: CTGrid = canvas.grid
        self.label = np.zeros(canvas.grid.shape, dtype=np.uint8)
        self.occupied = np.zeros(canvas.grid.shape, dtype=bool)
        self.min_contrast = float(min_contrast_hu)
        self.gap_mm = max(2.5, 1.01 * float(np.linalg.norm(canvas.grid.spacing)))
        z = self.grid.axis(0)
        self.z_lo, self.z_hi = float(z[0]), float(z[-1])
        margin = 3.0
        self.elements = [e for e in skeleton.in_range(self.z_lo + margin, self.z_hi - margin)]

    # ---------------------------------------------------------------- helpers
    def _in_volume(self, c: np.ndarray, margin: float = 1.0) -> bool:
        return self.z_lo + margin <= c[2] <= self.z_hi - margin

    def _vertebrae(self, with_body_in_range: bool = True) -> list[Vertebra]:
        out = []
        for v in self.skel.vertebrae.values():
            if v.sacral:
                continue
            if not with_body_in_range or (v.level.z_bot < self.z_hi - 2 and v.level.z_top > self.z_lo + 2):
                out.append(v)
        return out

    def _describe(self, mask: np.ndarray, box, centre: np.ndarray) -> dict:
        """Size and position of a drawn finding (label-independent part of the JSON record)."""
        grid = self.grid
        idx = np.argwhere(mask)
        sz, sy, sx = grid.spacing_zyx
        world = np.column_stack([grid.axis(2)[box[2]][idx[:, 2]], grid.axis(1)[box[1]][idx[:, 1]],
                                 grid.axis(0)[box[0]][idx[:, 0]]]).astype(np.float64)
        n = int(idx.shape[0])
        centroid = world.mean(axis=0)
        if n >= 3:
            cov = np.cov((world - centroid).T)
            vals, vecs = np.linalg.eigh(cov)
            axis = vecs[:, -1]
        else:
            axis = np.array([1.0, 0.0, 0.0])
        proj = (world - centroid) @ axis
        measured = float(proj.max() - proj.min() + abs(axis[0]) * sx + abs(axis[1]) * sy + abs(axis[2]) * sz)
        z_idx = idx[:, 0] + box[0].start
        return {
            "centre_mm": [round(float(v), 2) for v in centre],
            "centre_voxel": [int(v) for v in grid.index_of(centre)],
            "centroid_mm": [round(float(v), 2) for v in centroid],
            "measured_diameter_mm": round(measured, 2),
            "volume_ml": round(n * sx * sy * sz / 1000.0, 4),
            "n_voxels": n,
            "slices": [int(z_idx.min()), int(z_idx.max())],
        }

    def _commit(self, box, mask: np.ndarray, new_hu: np.ndarray, tissue: int, *, labelled: bool) -> None:
        hv, tv = self.canvas.hu[box], self.canvas.tissue[box]
        hv[mask] = new_hu
        tv[mask] = tissue
        if labelled:
            self.label[box][mask] = 1
        # keep findings apart by more than one voxel diagonal: they never touch, even 26-connected
        big = []
        for k, sl in enumerate(box):
            pad = int(math.ceil(self.gap_mm / self.grid.spacing_zyx[k]))
            big.append(slice(max(0, sl.start - pad), min(self.grid.shape[k], sl.stop + pad)))
        big_t = (big[0], big[1], big[2])
        m = np.zeros(tuple(b.stop - b.start for b in big), dtype=bool)
        m[tuple(slice(sl.start - b.start, sl.stop - b.start) for sl, b in zip(box, big))] = mask
        self.occupied[big_t] |= _dilate_mm(m, self.grid.spacing_zyx, self.gap_mm)

    def _ring_mean(self, box, mask: np.ndarray) -> float | None:
        ring = _dilate_mm(mask, self.grid.spacing_zyx, 3.0) & ~mask & ~self.occupied[box]
        bone_ring = ring & np.isin(self.canvas.tissue[box], np.array(BONE_TISSUES, np.uint8))
        use = bone_ring if bone_ring.sum() >= 4 else ring
        return float(self.canvas.hu[box][use].mean()) if use.any() else None

    # ---------------------------------------------------------------- metastases
    def _pick_site(self, rng: np.random.Generator) -> tuple[BoneElement, str] | None:
        classes: dict[str, list[BoneElement]] = {}
        for e in self.elements:
            for cls in e.samplers:
                classes.setdefault(cls, []).append(e)
        if not classes:
            return None
        names = sorted(classes)
        w = np.array([SITE_WEIGHTS[c] for c in names])
        cls = names[int(rng.choice(len(names), p=w / w.sum()))]
        elems = classes[cls]
        return elems[int(rng.integers(0, len(elems)))], cls

    @staticmethod
    def _lesion_sdf(p: Coords, centre: np.ndarray, diameter: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """An irregular blob no wider than ``diameter``: a rotated ellipsoid, up to two lobes, a wavy surface."""
        amp = 0.12
        a = diameter / 2.0 / (1.0 + amp)
        radii = (a, a * rng.uniform(0.65, 1.0), a * rng.uniform(0.65, 1.0))
        d = sdf_ellipsoid(p, centre, radii, random_rotation(rng))
        for _ in range(int(rng.integers(0, 3))):
            u = rng.normal(size=3)
            u /= np.linalg.norm(u)
            off = rng.uniform(0.2, 0.45) * a
            rs = min(rng.uniform(0.4, 0.65) * a, a - off)
            sub = (rs, rs * rng.uniform(0.7, 1.0), rs * rng.uniform(0.7, 1.0))
            d = np.minimum(d, sdf_ellipsoid(p, centre + u * off, sub, random_rotation(rng)))
        wave = np.clip(plane_wave_field(p, rng, max(6.0, 1.2 * a), 4), -1.0, 1.0)
        return d + np.float32(amp * a) * wave, min(radii)

    def draw_metastasis(self, rng: np.random.Generator, kind: str, diameter_range: tuple[float, float],
                        lesion_id: int) -> dict | None:
        """Draw one metastasis of ``kind``; returns its record or None when no valid placement was found."""
        canc = self.m.hu["cancellous"]
        for attempt in range(_MAX_TRIES):
            pick = self._pick_site(rng)
            if pick is None:
                return None
            element, cls = pick
            if attempt >= _MAX_TRIES // 2 and cls != "vertebral body":
                continue
            centre, site = element.samplers[cls](rng)
            if not self._in_volume(centre):
                continue
            lo_d, hi_d = diameter_range
            if cls == "rib":
                hi_d = min(hi_d, 25.0)
            diameter = float(math.exp(rng.uniform(math.log(lo_d), math.log(max(hi_d, lo_d)))))
            lo, hi = _world_box(centre, diameter / 2 + 5.0 + self.gap_mm)
            box = self.grid.box(lo, hi)
            if box is None:
                continue
            p = self.grid.coords(box)
            d_shape, r_min = self._lesion_sdf(p, centre, diameter, rng)
            d_bone = np.broadcast_to(element.sdf(p), d_shape.shape)
            breach = kind != "blastic" and rng.uniform() < 0.35
            ext = float(rng.uniform(1.5, 4.0)) if breach else 0.0
            soft_ok = np.isin(self.canvas.tissue[box], np.array(
                [Tissue.MUSCLE, Tissue.VISCERAL_FAT, Tissue.FAT, Tissue.CSF, Tissue.DISC, *BONE_TISSUES], np.uint8))
            mask = (d_shape <= 0) & (d_bone <= ext) & ~self.occupied[box]
            mask &= (d_bone <= 0) | soft_ok
            n = int(mask.sum())
            vox = float(np.prod(self.grid.spacing))
            nominal = math.pi / 6.0 * diameter ** 3 * 0.6
            if n < 4 or n * vox < 0.12 * nominal:
                continue
            before = self.canvas.hu[box][mask]
            in_bone = d_bone[mask] <= 0
            depth = -d_shape[mask]
            tex = rng.standard_normal(n).astype(np.float32)
            lytic_hu = float(rng.uniform(10.0, max(20.0, min(90.0, canc - 100.0))))
            peak = float(rng.uniform(500.0, 1200.0))
            # ill-defined: density rises from ~30 % of the peak excess at the margin to the full peak
            # half-way to the core, mottled ("cotton wool")
            t = np.clip(depth / (0.5 * r_min + 1e-3), 0.0, 1.0)
            q = 0.3 + 0.7 * t * t * (3.0 - 2.0 * t)
            mottle = np.broadcast_to(plane_wave_field(p, rng, max(4.0, 0.6 * r_min), 4), d_shape.shape)[mask]
            blast = before + (peak - before) * q * (1.0 + 0.2 * np.clip(mottle, -1.5, 1.5)) + 45.0 * tex
            lyt = np.where(in_bone, lytic_hu + 10.0 * tex, rng.uniform(30.0, 50.0) + 8.0 * tex)
            if kind == "lytic":
                new = lyt
            elif kind == "blastic":
                new = blast
            else:
                field = np.clip(plane_wave_field(p, rng, max(5.0, 0.9 * r_min), 4), -3, 3)
                f = np.broadcast_to(field, d_shape.shape)[mask]
                frac = float(rng.choice([rng.uniform(0.15, 0.35), rng.uniform(0.65, 0.85)]))
                thr = float(np.quantile(f, 1.0 - frac))
                new = np.where(f > thr, blast, lyt)
            new = new.astype(np.float32)
            contrast = float(new.mean() - before.mean())
            ring = self._ring_mean(box, mask)
            contrast_s = float(new.mean() - ring) if ring is not None else contrast
            if abs(contrast) < self.min_contrast or abs(contrast_s) < self.min_contrast:
                continue
            rec = {"id": lesion_id, "type": kind, "site": site, "site_class": cls, "bone": element.name,
                   "diameter_mm": round(diameter, 2)}
            rec.update(self._describe(mask, box, centre))
            rec.update({"hu_mean": round(float(new.mean()), 1), "contrast_hu": round(contrast, 1),
                        "contrast_to_surround_hu": round(contrast_s, 1),
                        "breaches_cortex": bool((~in_bone).any()), "labelled": True})
            self._commit(box, mask, new, Tissue.METASTASIS, labelled=True)
            return rec
        return None

    # ---------------------------------------------------------------- hard negatives
    def draw_hard_negative(self, rng: np.random.Generator, kind: str, hn_id: str) -> list[dict]:
        at_endplate = {"endplate_sclerosis": self._endplate_sclerosis, "schmorl_node": self._schmorl_node}
        for _ in range(_MAX_TRIES):
            if kind in at_endplate:
                pick = self._endplate(rng)
                out = at_endplate[kind](rng, hn_id, *pick) if pick is not None else []
            else:
                out = {"bone_island": self._bone_island, "hemangioma": self._hemangioma}[kind](rng, hn_id)
            if out:
                return out
        return []

    def _record(self, kind: str, hn_id: str, site: str, bone: str, diameter: float | None, box, mask, new,
                centre) -> dict:
        """JSON record of a mimic; ``diameter=None`` reports the measured longest diameter."""
        rec = {"id": hn_id, "type": kind, "site": site, "bone": bone}
        rec.update(self._describe(mask, box, centre))
        rec["diameter_mm"] = round(float(diameter), 2) if diameter is not None else rec["measured_diameter_mm"]
        rec.update({"hu_mean": round(float(np.mean(new)), 1), "labelled": False})
        return rec

    def _vertebra_pick(self, rng: np.random.Generator) -> Vertebra | None:
        vs = self._vertebrae()
        return vs[int(rng.integers(0, len(vs)))] if vs else None

    def _bone_island(self, rng: np.random.Generator, hn_id: str) -> list[dict]:
        cands = [e for e in self.elements if e.kind in ("vertebra", "ilium", "sacrum")]
        if not cands:
            return []
        e = cands[int(rng.integers(0, len(cands)))]
        cls = list(e.samplers)[0] if e.kind != "vertebra" else ("vertebral body" if rng.uniform() < 0.8 else "pedicle")
        centre, site = e.samplers[cls](rng)
        if not self._in_volume(centre):
            return []
        diameter = float(rng.uniform(3.0, 10.0))
        box = self.grid.box(*_world_box(centre, diameter / 2 + 2.0))
        if box is None:
            return []
        p = self.grid.coords(box)
        r = diameter / 2
        d = sdf_ellipsoid(p, centre, (r, r * rng.uniform(0.8, 1.0), r * rng.uniform(0.8, 1.0)), random_rotation(rng))
        inside = (e.cancellous_sdf(p) <= 0) if e.cancellous_sdf is not None else (e.sdf(p) <= -1.0)
        mask = (d <= 0) & np.broadcast_to(inside, d.shape) & ~self.occupied[box]
        if mask.sum() < 1:
            return []
        new = (float(rng.uniform(1000.0, 1500.0)) + 15.0 * rng.standard_normal(int(mask.sum()))).astype(np.float32)
        rec = self._record("bone_island", hn_id, site, e.name, diameter, box, mask, new, centre)
        self._commit(box, mask, new, Tissue.BONE_ISLAND, labelled=False)
        return [rec]

    def _endplate(self, rng: np.random.Generator) -> tuple[Vertebra, float, float] | None:
        """A random vertebra and one of its endplates inside the volume: (vertebra, height, +1/-1 into the body)."""
        v = self._vertebra_pick(rng)
        if v is None:
            return None
        opts = [(v.level.z_top, -1.0), (v.level.z_bot, 1.0)]
        opts = [o for o in opts if self.z_lo + 1 <= o[0] <= self.z_hi - 1]
        if not opts:
            return None
        z_ep, inward = opts[int(rng.integers(0, len(opts)))]
        return v, z_ep, inward

    def _endplate_sclerosis(self, rng: np.random.Generator, hn_id: str, v: Vertebra, z_ep: float, inward: float) -> list[dict]:
        th = float(rng.uniform(2.5, 6.0))
        alpha = float(rng.uniform(0, 2 * math.pi))
        centre = np.array([v.xc + 0.45 * v.w / 2 * math.cos(alpha), v.yc + 0.45 * v.d / 2 * math.sin(alpha),
                           z_ep + inward * th / 2])
        half = max(v.w, v.d) / 2 + 8.0
        box = self.grid.box((v.xc - half, v.yc - half, z_ep - th - 8), (v.xc + half, v.yc + half, z_ep + th + 8))
        if box is None:
            return []
        p = self.grid.coords(box)
        body = v.body_sdf(p)
        depth_into = (p[2] - np.float32(z_ep)) * np.float32(inward)
        wav = np.float32(th) * (1.0 + 0.35 * np.clip(plane_wave_field(p, rng, 12.0, 3), -1.5, 1.5))
        sector = (np.cos(np.arctan2(p[1] - np.float32(v.yc), p[0] - np.float32(v.xc)) - np.float32(alpha))
                  + 0.25 * plane_wave_field(p, rng, 8.0, 3) >= np.float32(rng.uniform(-0.4, 0.3)))
        mask = (body <= 0) & (depth_into >= -1.0) & (depth_into <= wav) & sector & ~self.occupied[box]
        out = []
        if mask.sum() >= 2:
            before = self.canvas.hu[box][mask]
            new = np.maximum(before, float(rng.uniform(450.0, 800.0)) + 30.0 * rng.standard_normal(before.size))
            new = new.astype(np.float32)
            out.append(self._record("endplate_sclerosis", hn_id, f"{v.level.name} endplate", v.level.name,
                                    None, box, mask, new, centre))
            self._commit(box, mask, new, Tissue.ENDPLATE_SCLEROSIS, labelled=False)
        if rng.uniform() < 0.65:  # osteophyte at the same margin
            r = float(rng.uniform(2.5, 5.0))
            c = np.array([v.xc + (v.w / 2 + 0.3 * r) * math.cos(alpha), v.yc + (v.d / 2 + 0.3 * r) * math.sin(alpha),
                          z_ep - inward * 0.5])
            if math.sin(alpha) > 0.55:  # no spurs into the canal
                c[1] = v.yc + v.d / 2 * 0.2
                c[0] = v.xc + math.copysign(v.w / 2 + 0.3 * r, math.cos(alpha) or 1.0)
            box2 = self.grid.box(*_world_box(c, r + 3.0))
            if box2 is not None:
                p2 = self.grid.coords(box2)
                d = sdf_ellipsoid(p2, c, (r, r * 0.8, r * 0.7), random_rotation(rng))
                ok = np.isin(self.canvas.tissue[box2], np.array(
                    [Tissue.MUSCLE, Tissue.VISCERAL_FAT, Tissue.DISC, Tissue.FAT, *BONE_TISSUES], np.uint8))
                m2 = (d <= 0) & ok & ~self.occupied[box2]
                if m2.sum() >= 1:
                    new2 = (float(rng.uniform(550.0, 900.0)) + 25.0 * rng.standard_normal(int(m2.sum()))).astype(np.float32)
                    out.append(self._record("osteophyte", f"{hn_id}o", f"{v.level.name} margin", v.level.name, 2 * r,
                                            box2, m2, new2, c))
                    self._commit(box2, m2, new2, Tissue.OSTEOPHYTE, labelled=False)
        return out

    def _schmorl_node(self, rng: np.random.Generator, hn_id: str, v: Vertebra, z_ep: float, inward: float) -> list[dict]:
        r = float(rng.uniform(2.0, 5.0))
        ang, rad = rng.uniform(0, 2 * math.pi), 0.5 * math.sqrt(rng.uniform())
        centre = np.array([v.xc + rad * v.w / 2 * math.cos(ang), v.yc + rad * v.d / 2 * math.sin(ang) - 0.1 * v.d,
                           z_ep + inward * 0.4 * r])
        box = self.grid.box(*_world_box(centre, r + 4.0))
        if box is None:
            return []
        p = self.grid.coords(box)
        d = sdf_ellipsoid(p, centre, (r, r * rng.uniform(0.8, 1.0), r * rng.uniform(0.8, 1.0)))
        body = np.broadcast_to(v.body_sdf(p), d.shape)
        rim_t = float(rng.uniform(1.0, 2.0))
        free = ~self.occupied[box]
        inner = (d <= 0) & (body <= 0) & free
        rim = (d > 0) & (d <= rim_t) & (body <= 0) & free
        if inner.sum() < 1:
            return []
        both = inner | rim
        new_full = np.where(inner, self.m.hu["disc"] + 8.0 * rng.standard_normal(d.shape),
                            float(rng.uniform(500.0, 700.0)) + 25.0 * rng.standard_normal(d.shape)).astype(np.float32)
        new = new_full[both]
        rec = self._record("schmorl_node", hn_id, f"{v.level.name} endplate", v.level.name, 2 * r + 2 * rim_t,
                           box, both, new, centre)
        self._commit(box, both, new, Tissue.SCHMORL_NODE, labelled=False)
        return [rec]

    def _hemangioma(self, rng: np.random.Generator, hn_id: str) -> list[dict]:
        v = self._vertebra_pick(rng)
        if v is None:
            return []
        centre = v.sample_body(rng, depth=0.4)
        if not self._in_volume(centre):
            return []
        diameter = float(rng.uniform(10.0, min(25.0, 0.9 * v.d)))
        box = self.grid.box(*_world_box(centre, diameter / 2 + 2.0))
        if box is None:
            return []
        p = self.grid.coords(box)
        r = diameter / 2
        d = sdf_ellipsoid(p, centre, (r, r * rng.uniform(0.75, 1.0), r * rng.uniform(0.8, 1.1)))
        mask = (d <= 0) & (np.broadcast_to(v.body_sdf(p), d.shape) <= -v.t_body) & ~self.occupied[box]
        if mask.sum() < 4:
            return []
        pitch = float(rng.uniform(3.0, 4.5))
        rod = float(rng.uniform(0.6, 0.9))
        ox, oy = rng.uniform(0, pitch, size=2)
        qx = np.mod(p[0] - np.float32(ox), pitch) - pitch / 2
        qy = np.mod(p[1] - np.float32(oy), pitch) - pitch / 2
        rods = np.broadcast_to((qx * qx + qy * qy) <= rod * rod, d.shape)
        fat = float(rng.uniform(-30.0, 30.0))
        full = np.where(rods, float(rng.uniform(400.0, 650.0)), fat) + 12.0 * rng.standard_normal(d.shape)
        new = full[mask].astype(np.float32)
        rec = self._record("hemangioma", hn_id, f"{v.level.name} body", v.level.name, diameter, box, mask, new, centre)
        self._commit(box, mask, new, Tissue.HEMANGIOMA, labelled=False)
        return [rec]

    def draw_calcifications(self, rng: np.random.Generator, n: int, first_id: int) -> list[dict]:
        """Aortic wall plaques (unlabelled), placed on the wall nearest the spine more often."""
        m = self.m
        out = []
        z_min = max(self.z_lo + 1.0, m.aorta_bifurcation_z)
        if z_min >= self.z_hi - 1.0:
            return out
        for i in range(n):
            z = float(rng.uniform(z_min, self.z_hi - 1.0))
            ax, ay = (float(v) for v in m.aorta_xy(z))
            ang = float(rng.normal(math.pi / 2, 1.0))  # +y: towards the spine
            rr = m.aorta_radius
            c = np.array([ax + rr * math.cos(ang), ay + rr * math.sin(ang), z])
            r = float(rng.uniform(1.2, 3.0))
            box = self.grid.box(*_world_box(c, r + 2.0))
            if box is None:
                continue
            p = self.grid.coords(box)
            mask = (sdf_ellipsoid(p, c, (r, r, r * 1.6)) <= 0) & np.isin(
                self.canvas.tissue[box], np.array([Tissue.BLOOD, Tissue.VISCERAL_FAT], np.uint8)) & ~self.occupied[box]
            if not mask.any():
                continue
            new = (float(rng.uniform(300.0, 900.0)) + 20.0 * rng.standard_normal(int(mask.sum()))).astype(np.float32)
            out.append(self._record("vascular_calcification", f"hn{first_id + i}", "aortic wall", "aorta", 2 * r,
                                    box, mask, new, c))
            self._commit(box, mask, new, Tissue.VASCULAR_CALCIFICATION, labelled=False)
        return out
