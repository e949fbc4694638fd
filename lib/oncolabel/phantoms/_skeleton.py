"""The skeleton of the synthetic torso: vertebrae, discs, sacrum, ribs, sternum and iliac bones.

Every bone is a signed-distance function (mm, negative inside) so that it can be painted with
partial-volume edges (cortex as a shell of given thickness, marrow inside) and so that findings
drawn later (metastases, bone islands, ...) can be clipped to exactly one bone. Each
:class:`BoneElement` also knows where lesions may sit in it (:meth:`BoneElement.sites`).

Sizes follow adult anatomy: lumbar pedicles 8-10 mm wide, canal 16 x 21 mm, spinous processes
~30 mm long, ribs ~12 x 7 mm in cross-section descending 50-70 mm from head to costal cartilage,
iliac crests at L4-L5 (Gray's Anatomy, 41st ed.; Panjabi et al., Spine 1991-92).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from oncolabel.phantoms._ct import (
    Canvas, Coords, CTGrid, Tissue, correlated_noise, occupancy, sdf_capsule, sdf_ellipse, sdf_ellipsoid,
)
from oncolabel.phantoms._torso import SpineLevel, TorsoModel

SOFT = (Tissue.VISCERAL_FAT, Tissue.MUSCLE, Tissue.FAT, Tissue.BLOOD, Tissue.AIR, Tissue.SKIN,
        Tissue.KIDNEY, Tissue.LIVER, Tissue.LUNG, Tissue.BOWEL_WALL, Tissue.FLUID, Tissue.FECES,
        Tissue.BOWEL_GAS, Tissue.SPLEEN)

# lesion site classes and their relative frequency (vertebral bodies and pedicles dominate)
SITE_WEIGHTS = {"vertebral body": 0.62, "pedicle": 0.14, "posterior elements": 0.07,
                "rib": 0.09, "ilium": 0.05, "sacrum": 0.03}


@dataclass
class BoneElement:
    """One bone: name, kind, world bounding box, SDF, and lesion sites (site class -> sampler)."""

    name: str
    kind: str
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    sdf: Callable[[Coords], np.ndarray]
    samplers: dict[str, Callable[[np.random.Generator], tuple[np.ndarray, str]]] = field(default_factory=dict)
    cancellous_sdf: Callable[[Coords], np.ndarray] | None = None

    def sites(self) -> list[str]:
        return list(self.samplers)


@dataclass
class Skeleton:
    elements: list[BoneElement]
    vertebrae: dict[str, "Vertebra"]

    def in_range(self, z_lo: float, z_hi: float) -> list[BoneElement]:
        return [e for e in self.elements if e.hi[2] > z_lo and e.lo[2] < z_hi]


def _texture(rng: np.random.Generator, shape, spacing_zyx, corr_mm: float = 0.8) -> np.ndarray:
    """Trabecular texture: unit-SD noise correlated over ~``corr_mm``."""
    return correlated_noise(rng, shape, [corr_mm / s for s in spacing_zyx])


def _paint_sdf_bone(canvas: Canvas, lo, hi, parts: Callable[[Coords], tuple[np.ndarray, np.ndarray]],
                    cortical: float, marrow: float, rng: np.random.Generator, tex_sd: float) -> None:
    """Paint a bone given ``parts(p) -> (outer_sdf, inner_sdf)`` over the world box ``lo``-``hi``."""
    grid = canvas.grid
    box = grid.box(lo, hi)
    if box is None:
        return
    p = grid.coords(box)
    d_out, d_in = parts(p)
    d_out = np.broadcast_to(d_out, tuple(s.stop - s.start for s in box)).astype(np.float32)
    d_in = np.broadcast_to(d_in, d_out.shape).astype(np.float32)
    occ_out = occupancy(d_out, grid.spacing_zyx)
    if not occ_out.any():
        return
    occ_in = occupancy(d_in, grid.spacing_zyx)
    mar = np.float32(marrow) + np.float32(tex_sd) * _texture(rng, d_out.shape, grid.spacing_zyx)
    canvas.composite_bone(box, occ_out, occ_in, cortical, mar)


# ============================================================================ vertebrae
class Vertebra:
    """Vertebral body, pedicles, laminae, spinous and transverse processes, articular processes.

    Sacral segments (S1, S2) get alae instead of transverse processes and a short median crest.
    """

    def __init__(self, lv: SpineLevel, m: TorsoModel) -> None:
        k = m.scale
        self.level, self.m = lv, m
        xc, yc = m.spine_xy(lv.z_mid)
        self.xc, self.yc = float(xc), float(yc)
        w, d, h = lv.width, lv.depth, lv.height
        self.w, self.d, self.h = w, d, h
        thor, sac = lv.region == "thoracic", lv.region == "sacral"
        self.sacral = sac
        self.t_body = m.cortex_mm
        self.t_post = m.cortex_mm * 1.4
        zm = lv.z_mid
        yb = self.yc + d / 2  # posterior wall of the body
        pw = (0.2 * w + 0.5) if not thor else (0.21 * w)
        self.pw, self.ph = pw, 0.55 * h
        xp = float(m.canal_half_width(zm)) + pw / 2 + 0.8
        self.xp = xp
        zp = zm + 0.12 * h
        self.pedicles = [((self.xc + s * xp, yb - 6.0, zp), (self.xc + s * (xp + 1.0), yb + 11.0 * k, zp))
                         for s in (-1.0, 1.0)]
        self.zp = zp
        ylam = yb + (21.0 if not thor else 19.0) * k
        zl = zm - 0.05 * h
        self.laminae = [((self.xc + s * (xp + 1.0), yb + 11.0 * k, zl), (self.xc, ylam + 1.0, zl)) for s in (-1.0, 1.0)]
        self.lam_r, self.lam_hz = 3.2 * k, (0.42 if not sac else 0.5) * h
        if sac:
            sp_len, sp_drop, sp_hh = 12.0 * k, 0.0, 0.4 * h
        elif thor:
            sp_len, sp_drop, sp_hh = 34.0 * k, 0.9 * h, 5.5 * k
        else:
            sp_len, sp_drop, sp_hh = 30.0 * k, 0.15 * h, 0.33 * h
        self.spinous = ((self.xc, ylam, zl), (self.xc, ylam + sp_len, zl - sp_drop))
        self.sp_hh, self.sp_hw = sp_hh, 3.0 * k
        if sac:
            self.tps = []
            f = 1.0 if lv.name == "S1" else 0.8
            self.alae = [((self.xc + s * (w / 2 + 12.0 * k * f), self.yc + 4.0 * k, zm),
                          (25.0 * k * f, 17.0 * k * f, h / 2 + 3.0)) for s in (-1.0, 1.0)]
            self.ala_lateral = w / 2 + 37.0 * k * f
        elif thor:
            self.tps = [((self.xc + s * xp, yb + 10.0 * k, zp), (self.xc + s * (w / 2 + 15.0 * k), yb + 26.0 * k, zp),
                         5.5 * k, 6.0 * k) for s in (-1.0, 1.0)]
            self.alae = []
        else:
            self.tps = [((self.xc + s * xp, yb + 8.0 * k, zm), (self.xc + s * (w / 2 + 24.0 * k), yb + 12.0 * k, zm),
                         4.2 * k, 5.5 * k) for s in (-1.0, 1.0)]
            self.alae = []
        if sac:
            self.facets = []
        else:
            self.facets = [((self.xc + s * (xp + 3.0 * k), yb + 15.0 * k, lv.z_top + 2.0 * k), (5.5 * k, 7.0 * k, 7.0 * k))
                           for s in (-1.0, 1.0)]
            self.facets += [((self.xc + s * (xp - 1.5 * k), yb + 22.0 * k, lv.z_bot - 2.0 * k), (5.0 * k, 6.5 * k, 7.0 * k))
                            for s in (-1.0, 1.0)]
        reach = max(w / 2 + 26.0 * k, (w / 2 + 40.0 * k) if sac else 0.0)
        self.lo = (self.xc - reach, self.yc - d / 2 - 4.0, lv.z_bot - 12.0 - sp_drop)
        self.hi = (self.xc + reach, ylam + sp_len + sp_hh + 3.0, lv.z_top + 12.0)

    # -------------------------------------------------------------- SDFs
    def body_sdf(self, p: Coords) -> np.ndarray:
        """Kidney-shaped body with a slight waist and flat endplates."""
        dz = p[2] - np.float32(self.level.z_mid)
        hz = self.h / 2
        waist = 1.0 - 0.06 * (1.0 - np.clip((dz / hz) ** 2, 0.0, 1.0))
        dx, dy = p[0] - np.float32(self.xc), p[1] - np.float32(self.yc)
        d_xy = sdf_ellipse(dx, dy, self.w / 2 * waist, self.d / 2 * waist)
        rc = 0.7 * self.w / 2
        cy = self.d / 2 + rc - 2.5 * self.m.scale
        d_conc = rc - np.sqrt(dx * dx + (dy - np.float32(cy)) ** 2)
        d = np.maximum(np.maximum(d_xy, d_conc), np.abs(dz) - np.float32(hz))
        for c, r in self.alae:
            d = np.minimum(d, sdf_ellipsoid(p, c, r))
        return d

    def pedicle_sdf(self, p: Coords) -> np.ndarray:
        r = self.pw / 2
        return np.minimum(*[sdf_capsule(p, a, b, r, (1.0, 1.0, r / (self.ph / 2))) for a, b in self.pedicles])

    def posterior_sdf(self, p: Coords) -> np.ndarray:
        """Laminae, spinous process, transverse and articular processes (pedicles excluded)."""
        d = None
        for a, b in self.laminae:
            di = sdf_capsule(p, a, b, self.lam_r, (1.0, 1.0, self.lam_r / self.lam_hz))
            d = di if d is None else np.minimum(d, di)
        a, b = self.spinous
        d = np.minimum(d, sdf_capsule(p, a, b, self.sp_hh, (self.sp_hh / self.sp_hw, 1.0, 1.0)))
        for a, b, r, hz in self.tps:
            d = np.minimum(d, sdf_capsule(p, a, b, r, (1.0, 1.0, r / hz)))
        for c, r in self.facets:
            d = np.minimum(d, sdf_ellipsoid(p, c, r))
        return d

    def parts(self, p: Coords) -> tuple[np.ndarray, np.ndarray]:
        d_body = self.body_sdf(p)
        d_post = np.minimum(self.pedicle_sdf(p), self.posterior_sdf(p))
        return np.minimum(d_body, d_post), np.minimum(d_body + self.t_body, d_post + self.t_post)

    def sdf(self, p: Coords) -> np.ndarray:
        return self.parts(p)[0]

    # -------------------------------------------------------------- lesion sites
    def sample_body(self, rng: np.random.Generator, depth: float = 0.65) -> np.ndarray:
        """A point in the body's cancellous core (radius fraction <= ``depth``)."""
        ang = rng.uniform(0, 2 * math.pi)
        rad = depth * math.sqrt(rng.uniform(0, 1))
        z = self.level.z_mid + rng.uniform(-0.3, 0.3) * self.h
        return np.array([self.xc + rad * math.cos(ang) * self.w / 2,
                         self.yc + rad * math.sin(ang) * self.d / 2 * 0.9 - 0.05 * self.d, z])

    def sample_pedicle(self, rng: np.random.Generator) -> np.ndarray:
        a, b = self.pedicles[int(rng.integers(0, 2))]
        t = rng.uniform(0.2, 0.8)
        return np.array([a[i] + t * (b[i] - a[i]) for i in range(3)])

    def sample_posterior(self, rng: np.random.Generator) -> np.ndarray:
        segs = self.laminae + [self.spinous]
        a, b = segs[int(rng.integers(0, len(segs)))]
        t = rng.uniform(0.2, 0.7)
        return np.array([a[i] + t * (b[i] - a[i]) for i in range(3)])

    def element(self) -> BoneElement:
        name = self.level.name
        if self.sacral:
            samplers = {"sacrum": lambda rng: (self.sample_body(rng), f"sacrum ({name})")}
        else:
            samplers = {"vertebral body": lambda rng: (self.sample_body(rng), f"{name} body"),
                        "pedicle": lambda rng: (self.sample_pedicle(rng), f"{name} pedicle"),
                        "posterior elements": lambda rng: (self.sample_posterior(rng), f"{name} posterior elements")}
        return BoneElement(name, "sacrum" if self.sacral else "vertebra", self.lo, self.hi, self.sdf, samplers,
                           cancellous_sdf=lambda p: self.body_sdf(p) + self.t_body)

    def paint(self, canvas: Canvas, rng: np.random.Generator) -> None:
        hu = self.m.hu
        _paint_sdf_bone(canvas, self.lo, self.hi, self.parts, hu["cortical"], hu["cancellous"], rng, 55.0)


def _paint_disc(canvas: Canvas, lower: Vertebra, upper: Vertebra, m: TorsoModel) -> None:
    z0, z1 = lower.level.z_top - 1.5, upper.level.z_bot + 1.5
    w, d = 0.5 * (lower.w + upper.w), 0.5 * (lower.d + upper.d)
    xc, yc = 0.5 * (lower.xc + upper.xc), 0.5 * (lower.yc + upper.yc)
    box = canvas.grid.box((xc - w / 2 - 4, yc - d / 2 - 4, z0), (xc + w / 2 + 4, yc + d / 2 + 4, z1))
    if box is None:
        return
    x, y, z = canvas.grid.coords(box)
    t = np.clip((z - z0) / max(z1 - z0, 1e-3), 0, 1)
    bulge = 1.0 + 0.05 * np.sin(np.pi * t)
    dx, dy = x - np.float32(xc), y - np.float32(yc)
    d_xy = sdf_ellipse(dx, dy, w / 2 * bulge, d / 2 * bulge)
    rc = 0.7 * w / 2
    d_conc = rc - np.sqrt(dx * dx + (dy - np.float32(d / 2 + rc - 2.5 * m.scale)) ** 2)
    mask = np.maximum(d_xy, d_conc) <= 0
    canvas.paint(box, mask, m.hu["disc"], Tissue.DISC, only_on=SOFT)


# ============================================================================ ribs
class RibCage:
    """Ribs 2-12 on both sides plus costal cartilages.

    The main arc of every rib lies on one elliptical cage (posterior half-axis through the rib angles,
    lateral and anterior half-axes inside the chest wall); rib ``k`` runs at the height of its head
    and descends anteriorly. Rib necks are straight bars from the head (beside the vertebral body)
    to the rib angle.
    """

    def __init__(self, m: TorsoModel, vertebrae: dict[str, Vertebra], rng: np.random.Generator) -> None:
        k = m.scale
        self.m = m
        t10 = vertebrae["T10"]
        a_b, _, _ = m.body_axes(np.float32(t10.level.z_mid))
        self.cx, self.cy = m.body_x, m.body_y + 4.0
        self.a = float(a_b) - m.fat_mm - 0.6 * m.wall_mm - 8.0
        self.b_ant = m.body_b - 1.1 * m.fat_mm - 0.6 * m.wall_mm - 8.0
        xa = t10.w / 2 + 30.0 * k
        ya = t10.yc + t10.d / 2 + 22.0 * k - self.cy
        self.b_post = ya / math.sqrt(max(1.0 - (xa / self.a) ** 2, 0.05))
        self.phi_a = math.atan2(xa, ya)
        self.drop = float(rng.uniform(50.0, 70.0)) * k
        self.t_cortex = m.cortex_mm * 1.2
        self.ribs: list[dict] = []
        for name, v in vertebrae.items():
            if not name.startswith("T"):
                continue
            n = int(name[1:])
            if n < 2:
                continue
            if n <= 7:
                phi_e, phi_c = 2.30, 2.95
            elif n <= 10:
                phi_e, phi_c = 2.20, 2.70
            elif n == 11:
                phi_e, phi_c = 1.95, 2.05
            else:
                phi_e, phi_c = 1.50, 1.55
            z_head = v.level.z_top - 0.2 * v.h
            self.ribs.append(dict(n=n, z=z_head, phi_e=phi_e, phi_c=phi_c, size=0.8 if n >= 11 else 1.0,
                                  head_xy=(v.xc, v.yc + 0.2 * v.d), head_dx=v.w / 2 - 1.0))
        self.ribs.sort(key=lambda r: r["z"])
        self.z_heads = np.array([r["z"] for r in self.ribs], dtype=np.float32)

    def radius(self, phi: np.ndarray) -> np.ndarray:
        b = np.where(np.cos(phi) >= 0, self.b_post, self.b_ant)
        return 1.0 / np.sqrt((np.sin(phi) / self.a) ** 2 + (np.cos(phi) / b) ** 2)

    def angle_point(self, side: float) -> tuple[float, float]:
        r = float(self.radius(np.float32(self.phi_a)))
        return self.cx + side * r * math.sin(self.phi_a), self.cy + r * math.cos(self.phi_a)

    def _section(self, dxa: np.ndarray, dy: np.ndarray, z: np.ndarray, idx: np.ndarray | int):
        """Rib cross-section SDFs (bone, bone+cartilage) and the analytic footprint inputs."""
        rho = np.sqrt(dxa * dxa + dy * dy)
        phi = np.arctan2(dxa, dy)
        r = self.radius(phi)
        eps = 1e-3
        dr = (self.radius(phi + eps) - self.radius(phi - eps)) / (2 * eps)
        d_perp = (rho - r) / np.sqrt(1.0 + (dr / r) ** 2)
        frac = np.clip((phi - self.phi_a) / (math.pi - self.phi_a), 0.0, 1.0)
        u = z + self.drop * frac ** 1.4
        z_head = self.z_heads[idx]
        phi_e = np.array([rb["phi_e"] for rb in self.ribs], np.float32)[idx]
        phi_c = np.array([rb["phi_c"] for rb in self.ribs], np.float32)[idx]
        size = np.array([rb["size"] for rb in self.ribs], np.float32)[idx]
        k = self.m.scale
        hv = (4.5 + 2.0 * np.sin(np.clip(phi, 0, math.pi / 2))) * k * size
        hr = 3.2 * k * size
        dv = u - z_head
        e = sdf_ellipse(d_perp, dv, hr, hv)
        start = (self.phi_a - 0.05 - phi) * rho
        d_all = np.maximum(np.maximum(e, (phi - phi_c) * rho), start)
        d_bone = np.maximum(np.maximum(e, (phi - phi_e) * rho), start)
        return d_bone, d_all, d_perp / (hr * hr), dv / (hv * hv)

    def rib_sdf(self, p: Coords, i: int, side: float) -> np.ndarray:
        """SDF of rib ``self.ribs[i]`` on ``side`` (+1 left, -1 right), neck included."""
        dx = (p[0] - np.float32(self.cx)) * np.float32(side)
        dy = p[1] - np.float32(self.cy)
        d_bone, _, _, _ = self._section(np.maximum(dx, 0.0) + 0 * dy, dy + 0 * dx, p[2], i)
        d_bone = np.where(dx < 0, 1e3, d_bone)
        return np.minimum(d_bone, self.neck_sdf(p, i, side))

    def neck(self, i: int, side: float):
        rb = self.ribs[i]
        hx, hy = rb["head_xy"]
        xa, ya = self.angle_point(side)
        return (hx + side * rb["head_dx"], hy, rb["z"]), (xa, ya, rb["z"]), 4.3 * self.m.scale * rb["size"]

    def neck_sdf(self, p: Coords, i: int, side: float) -> np.ndarray:
        a, b, r = self.neck(i, side)
        return sdf_capsule(p, a, b, r)

    def paint(self, canvas: Canvas, rng: np.random.Generator) -> None:
        grid = canvas.grid
        m = self.m
        z = grid.axis(0)
        zsel = np.nonzero((z <= self.z_heads.max() + 12.0) & (z >= self.z_heads.min() - self.drop - 12.0))[0]
        if zsel.size == 0:
            return
        z0, z1 = int(zsel[0]), int(zsel[-1]) + 1
        x = grid.axis(2)[None, :]
        y = grid.axis(1)[:, None]
        dx = np.abs(x - np.float32(self.cx)) + 0 * y
        dy = (y - np.float32(self.cy)) + 0 * x
        rho = np.sqrt(dx * dx + dy * dy)
        phi = np.arctan2(dx, dy)
        ring = (np.abs(rho - self.radius(phi)) < 12.0) & (phi > self.phi_a - 0.1)
        flat = np.flatnonzero(ring)
        if flat.size == 0:
            return
        zz = z[z0:z1, None]
        dxr, dyr = dx.ravel()[flat][None, :], dy.ravel()[flat][None, :]
        frac = np.clip((np.arctan2(dxr, dyr) - self.phi_a) / (math.pi - self.phi_a), 0.0, 1.0)
        u = zz + self.drop * frac ** 1.4
        idx = np.clip(np.searchsorted(self.z_heads, u), 1, len(self.z_heads) - 1) if len(self.z_heads) > 1 \
            else np.zeros(u.shape, int)
        if len(self.z_heads) > 1:
            lower = self.z_heads[idx - 1]
            idx = np.where(np.abs(u - lower) < np.abs(u - self.z_heads[idx]), idx - 1, idx)
        d_bone, d_all, gp, gv = self._section(dxr, dyr, zz, idx)
        sz, sy, sx = grid.spacing_zyx
        gn = np.sqrt(gp * gp + gv * gv) + 1e-9
        width = np.maximum((np.abs(gp) * sx + np.abs(gv) * sz) / gn, 1e-3)
        occ_all = np.clip(0.5 - d_all / width, 0.0, 1.0)
        occ_out = np.clip(0.5 - d_bone / width, 0.0, 1.0)
        occ_in = np.clip(0.5 - (d_bone + self.t_cortex) / width, 0.0, 1.0)
        occ_cart = np.clip(occ_all - occ_out, 0.0, 1.0)
        hu2 = canvas.hu[z0:z1].reshape(z1 - z0, -1)
        ti2 = canvas.tissue[z0:z1].reshape(z1 - z0, -1)
        old = hu2[:, flat]
        marrow = np.float32(m.hu["cancellous"] - 20.0) + 30.0 * rng.standard_normal(old.shape, dtype=np.float32)
        cart = np.float32(m.hu["cartilage"] + max(0.0, m.age - 50.0) * 4.0)
        new = (old * (1.0 - occ_out - occ_cart) + (occ_out - occ_in) * np.float32(m.hu["cortical"])
               + occ_in * marrow + occ_cart * cart)
        hu2[:, flat] = new
        told = ti2[:, flat]
        told[occ_cart >= 0.5] = Tissue.CARTILAGE
        told[(occ_out >= 0.5) & (occ_in < 0.5)] = Tissue.CORTICAL_BONE
        told[occ_in >= 0.5] = Tissue.CANCELLOUS_BONE
        ti2[:, flat] = told
        # necks, from the costovertebral joint to the rib angle
        for i in range(len(self.ribs)):
            for side in (-1.0, 1.0):
                a, b, r = self.neck(i, side)
                lo = [min(a[j], b[j]) - r - 2 for j in range(3)]
                hi = [max(a[j], b[j]) + r + 2 for j in range(3)]
                neck_parts = (lambda p, i=i, s=side: (self.neck_sdf(p, i, s), self.neck_sdf(p, i, s) + self.t_cortex))
                _paint_sdf_bone(canvas, lo, hi, neck_parts, m.hu["cortical"], m.hu["cancellous"] - 20.0, rng, 30.0)

    def elements(self, grid: CTGrid) -> list[BoneElement]:
        out = []
        for i, rb in enumerate(self.ribs):
            for side, sname in ((-1.0, "right"), (1.0, "left")):
                lo = (self.cx - self.a - 15 if side < 0 else self.cx - 15, self.cy - self.b_ant - 15,
                      rb["z"] - self.drop - 15)
                hi = (self.cx + 15 if side < 0 else self.cx + self.a + 15, self.cy + self.b_post + 15, rb["z"] + 15)

                def sample(rng, i=i, side=side, rb=rb):
                    phi = rng.uniform(self.phi_a + 0.1, rb["phi_e"] - 0.15)
                    r = float(self.radius(np.float32(phi)))
                    frac = (phi - self.phi_a) / (math.pi - self.phi_a)
                    zc = rb["z"] - self.drop * frac ** 1.4
                    return np.array([self.cx + side * r * math.sin(phi), self.cy + r * math.cos(phi), zc]), "rib"

                out.append(BoneElement(f"rib {rb['n']} {sname}", "rib", lo, hi,
                                       lambda p, i=i, s=side: self.rib_sdf(p, i, s), {"rib": sample}))
        return out


# ============================================================================ pelvis and sternum
class Ilium:
    """Iliac wing as a curved plate: an arc (centre anteromedial) thick at the sacroiliac joint and the
    anterior superior iliac spine, thin in the iliac fossa, capped by a curved crest near L4."""

    def __init__(self, m: TorsoModel, s1: Vertebra, side: float) -> None:
        k = m.scale
        self.m, self.side, self.k = m, side, k
        self.cx = s1.xc + side * 7.0 * k
        self.cy = s1.yc - 82.0 * k
        self.r = 120.0 * k
        self.psi0, self.psi1 = math.radians(25.0), math.radians(81.0)
        self.z_crest = m.level("L4").z_mid - 4.0
        self.si_x = s1.xc + side * (s1.ala_lateral + 2.5)
        xs = (s1.xc + side * 45.0 * k, s1.xc + side * 150.0 * k)
        self.lo = (min(xs), self.cy + 10.0 * k, m.levels[0].z_bot - 80)
        self.hi = (max(xs), self.cy + 140.0 * k, self.z_crest + 4)

    def _polar(self, p: Coords):
        dx = (p[0] - np.float32(self.cx)) * np.float32(self.side)
        dy = p[1] - np.float32(self.cy)
        return np.sqrt(dx * dx + dy * dy), np.arctan2(dx, dy)

    def thickness(self, psi):
        k = self.k
        return k * (5.0 + 22.0 * np.exp(-((psi - math.radians(28.0)) / math.radians(9.0)) ** 2)
                    + 8.0 * np.exp(-((psi - math.radians(77.0)) / math.radians(4.0)) ** 2))

    def crest(self, psi):
        return self.z_crest - 50.0 * self.k * ((psi - math.radians(55.0)) / math.radians(30.0)) ** 2

    def sdf(self, p: Coords) -> np.ndarray:
        rho, psi = self._polar(p)
        d_rad = np.abs(rho - np.float32(self.r)) - self.thickness(psi) / 2
        d_arc = np.maximum(np.float32(self.psi0) - psi, psi - np.float32(self.psi1)) * np.float32(self.r)
        d_top = p[2] - self.crest(psi)
        d_si = (np.float32(self.si_x) - p[0]) * np.float32(self.side)
        return np.maximum(np.maximum(d_rad, d_arc), np.maximum(d_top, d_si))

    def parts(self, p: Coords):
        d = self.sdf(p)
        return d, d + self.m.cortex_mm * 1.5

    def paint_muscles(self, canvas: Canvas) -> None:
        grid = canvas.grid
        box = grid.box(self.lo, self.hi)
        if box is None:
            return
        p = grid.coords(box)
        rho, psi = self._polar(p)
        t = self.thickness(psi) / 2
        below = p[2] < self.crest(psi) + 4.0
        in_arc = (psi > self.psi0 - 0.1) & (psi < self.psi1)
        glut = below & in_arc & (rho > self.r + t) & (rho < self.r + t + 42.0 * self.k)
        iliacus = below & in_arc & (rho < self.r - t) & (rho > self.r - t - 16.0 * self.k)
        free = (Tissue.VISCERAL_FAT, Tissue.BOWEL_WALL, Tissue.FLUID, Tissue.FECES, Tissue.BOWEL_GAS)
        canvas.paint(box, glut | iliacus, self.m.hu["muscle"], Tissue.MUSCLE, only_on=free)

    def element(self) -> BoneElement:
        def sample(rng):
            psi = math.radians(rng.uniform(26.0, 34.0)) if rng.uniform() < 0.75 else math.radians(rng.uniform(74.0, 79.0))
            rr = self.r + rng.uniform(-0.2, 0.2) * float(self.thickness(psi))
            z = self.crest(psi) - rng.uniform(8.0, 45.0)
            return np.array([self.cx + self.side * rr * math.sin(psi), self.cy + rr * math.cos(psi), z]), "ilium"

        name = f"ilium {'left' if self.side > 0 else 'right'}"
        return BoneElement(name, "ilium", self.lo, self.hi, self.sdf, {"ilium": sample})


def _paint_sternum(canvas: Canvas, m: TorsoModel, rng: np.random.Generator) -> None:
    k = m.scale
    z_x = m.dome_right - 20.0
    z_top = m.levels[-1].z_top
    x0, y0 = m.body_x, m.body_y - m.body_b + m.fat_mm * 0.9 + 14.0

    def parts(p):
        xiph = np.clip((np.float32(z_x + 40.0) - p[2]) / 40.0, 0.0, 1.0)
        rx = 14.0 * k * (1.0 - 0.5 * xiph)
        d = np.maximum(sdf_ellipse(p[0] - np.float32(x0), p[1] - np.float32(y0), rx, 6.0 * k), np.float32(z_x) - p[2])
        return d, d + m.cortex_mm * 1.2

    _paint_sdf_bone(canvas, (x0 - 20, y0 - 10, z_x - 2), (x0 + 20, y0 + 10, z_top), parts, m.hu["cortical"],
                    m.hu["cancellous"] - 10.0, rng, 30.0)


# ============================================================================ assembly
def paint_skeleton(canvas: Canvas, m: TorsoModel, rng: np.random.Generator) -> Skeleton:
    """Paint discs, vertebrae, sacrum, ribs, sternum and iliac bones; return the bone elements."""
    grid = canvas.grid
    z_lo, z_hi = float(grid.axis(0)[0]) - 40.0, float(grid.axis(0)[-1]) + 40.0
    vertebrae = {lv.name: Vertebra(lv, m) for lv in m.levels}
    names = [lv.name for lv in m.levels]
    ilia = [Ilium(m, vertebrae["S1"], s) for s in (-1.0, 1.0)]
    for il in ilia:
        il.paint_muscles(canvas)
    for lower, upper in zip(names[:-1], names[1:]):
        if vertebrae[lower].hi[2] > z_lo and vertebrae[upper].lo[2] < z_hi:
            _paint_disc(canvas, vertebrae[lower], vertebrae[upper], m)
    elements: list[BoneElement] = []
    for name in names:
        v = vertebrae[name]
        elements.append(v.element())
        if v.hi[2] > z_lo and v.lo[2] < z_hi:
            v.paint(canvas, rng)
    cage = RibCage(m, vertebrae, rng)
    cage.paint(canvas, rng)
    elements += cage.elements(grid)
    if m.dome_right - 20.0 < z_hi:
        _paint_sternum(canvas, m, rng)
    for il in ilia:
        _paint_sdf_bone(canvas, il.lo, il.hi, il.parts, m.hu["cortical"], m.hu["cancellous"] - 30.0, rng, 30.0)
        elements.append(il.element())
    return Skeleton(elements, vertebrae)
