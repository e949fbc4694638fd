"""A parametric adult torso (lower thorax to upper pelvis) for synthetic CT.

:class:`TorsoModel` holds one patient's anatomy (sizes, spine levels, organ positions, attenuation
values) drawn from a random generator; :func:`paint_soft_tissues` paints everything but the
skeleton onto a :class:`~oncolabel.phantoms._ct.Canvas`. The skeleton lives in
:mod:`oncolabel.phantoms._skeleton`.

All positions are LPS world millimetres (+x patient left, +y posterior, +z superior). The
craniocaudal landmarks are tied to the spine levels: ``z_s1`` is the superior endplate of S1.
Dimensions follow standard adult anatomy (vertebral body sizes after Panjabi et al., Spine 1991-92;
diaphragm dome near T10, renal hila near L1-L2, aortic bifurcation at L4, iliac crest at L4-L5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from oncolabel.phantoms._ct import (
    HU_TABLE, Canvas, Tissue, plane_wave_field, sdf_capsule, sdf_ellipse, sdf_ellipsoid, smoothstep,
)

# name, body height, body width (lateral), body depth (AP), disc height below (mm, scale 1)
_LEVEL_TABLE: tuple[tuple[str, float, float, float, float], ...] = (
    ("S2", 24.0, 40.0, 26.0, 3.0),
    ("S1", 28.0, 48.0, 33.0, 3.0),
    ("L5", 27.0, 50.0, 34.0, 11.0),
    ("L4", 27.0, 49.0, 34.0, 11.0),
    ("L3", 27.0, 48.0, 34.0, 11.0),
    ("L2", 26.0, 46.0, 33.0, 10.0),
    ("L1", 25.0, 44.0, 31.0, 10.0),
    ("T12", 24.0, 41.0, 29.0, 8.0),
    ("T11", 23.0, 38.0, 28.0, 7.0),
    ("T10", 21.0, 35.0, 27.0, 6.0),
    ("T9", 20.0, 33.0, 26.0, 6.0),
    ("T8", 19.0, 32.0, 25.0, 5.0),
    ("T7", 18.5, 31.0, 24.0, 5.0),
    ("T6", 18.0, 30.0, 23.0, 5.0),
    ("T5", 17.0, 29.0, 22.0, 5.0),
    ("T4", 16.5, 28.0, 21.0, 4.5),
    ("T3", 16.0, 27.0, 20.0, 4.5),
    ("T2", 15.5, 26.0, 19.0, 4.5),
)

CAVITY = (Tissue.VISCERAL_FAT,)


@dataclass(frozen=True)
class SpineLevel:
    """One vertebra: name, superior/inferior endplate heights (world z, mm) and body size (mm)."""

    name: str
    z_bot: float
    z_top: float
    width: float
    depth: float

    @property
    def z_mid(self) -> float:
        return 0.5 * (self.z_bot + self.z_top)

    @property
    def height(self) -> float:
        return self.z_top - self.z_bot

    @property
    def region(self) -> str:
        return {"S": "sacral", "L": "lumbar", "T": "thoracic"}[self.name[0]]


@dataclass
class TorsoModel:
    """One patient's torso. Build with :meth:`draw`; all lengths mm, attenuation HU."""

    z_s1: float
    scale: float
    age: float
    body_a: float  # lateral half-width
    body_b: float  # AP half-depth
    body_x: float
    body_y: float
    fat_mm: float
    wall_mm: float
    pelvic_flare: float
    lordosis_mm: float
    kyphosis_mm: float
    scoliosis_mm: float
    scoliosis_phase: float
    levels: tuple[SpineLevel, ...]
    hu: dict[str, float]
    dome_right: float
    dome_left: float
    cortex_mm: float
    organ_jitter: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    wobble: tuple[float, float] = (0.0, 0.0)

    # ------------------------------------------------------------------ construction
    @classmethod
    def draw(cls, rng: np.random.Generator, *, z_s1: float, age: float) -> "TorsoModel":
        """Draw a patient. ``z_s1`` places the S1 superior endplate in world z; ``age`` (years) sets bone density."""
        scale = float(rng.uniform(0.92, 1.08))
        levels = _build_levels(z_s1, scale)
        hu = {name: r.draw(rng) for name, r in HU_TABLE.items()}
        # trabecular attenuation falls ~2.6 HU/year from ~300 HU at 30 (Pickhardt 2013), clipped to 140-300
        canc = 300.0 - 2.6 * (age - 30.0) + rng.normal(0.0, 18.0)
        hu["cancellous"] = float(np.clip(canc, HU_TABLE["cancellous"].low, HU_TABLE["cancellous"].high))
        t10 = _level(levels, "T10")
        dome_r = t10.z_mid + float(rng.uniform(-12.0, 8.0))
        jitter = {k: tuple(float(v) for v in rng.normal(0.0, 6.0, size=3))
                  for k in ("liver", "spleen", "stomach", "kidney_r", "kidney_l", "heart", "gallbladder")}
        return cls(
            z_s1=z_s1, scale=scale, age=age,
            body_a=float(rng.uniform(132.0, 172.0)) * scale,
            body_b=float(rng.uniform(92.0, 122.0)) * scale,
            body_x=float(rng.normal(0.0, 4.0)), body_y=float(rng.normal(-8.0, 6.0)),
            fat_mm=float(rng.uniform(6.0, 38.0)), wall_mm=float(rng.uniform(8.0, 14.0)),
            pelvic_flare=float(rng.uniform(0.04, 0.14)),
            lordosis_mm=float(rng.uniform(6.0, 18.0)), kyphosis_mm=float(rng.uniform(4.0, 14.0)),
            scoliosis_mm=float(abs(rng.normal(0.0, 3.0))), scoliosis_phase=float(rng.uniform(0, 2 * math.pi)),
            levels=levels, hu=hu, dome_right=dome_r, dome_left=dome_r - float(rng.uniform(6.0, 20.0)),
            cortex_mm=float(np.clip(1.5 - 0.008 * (age - 30.0) + rng.normal(0, 0.1), 0.8, 1.6)),
            organ_jitter=jitter, wobble=(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 2 * math.pi))),
        )

    # ------------------------------------------------------------------ levels
    def level(self, name: str) -> SpineLevel:
        return _level(self.levels, name)

    def level_at(self, z: float) -> SpineLevel:
        """The vertebra whose body contains ``z``, else the one just below (disc space)."""
        below = [lv for lv in self.levels if lv.z_bot <= z]
        return below[-1] if below else self.levels[0]

    @property
    def z_min_modelled(self) -> float:
        return self.levels[0].z_bot + 5.0

    @property
    def z_max_modelled(self) -> float:
        return self.levels[-1].z_top - 5.0

    # ------------------------------------------------------------------ outline
    def body_axes(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lateral half-width, anterior and posterior half-depths of the body outline at ``z``."""
        l4, l1 = self.level("L4"), self.level("L1")
        flare = 1.0 + self.pelvic_flare * (1.0 - smoothstep(self.z_s1, l4.z_top, z))
        chest = 1.0 - 0.04 * smoothstep(l1.z_top, l1.z_top + 60.0, z)
        a = self.body_a * flare * chest
        b_ant = self.body_b * (1.0 + 0.04 * np.sin((np.asarray(z) - self.z_s1) / 90.0))
        b_post = self.body_b * 0.92 * np.ones_like(np.asarray(z, dtype=np.float32))
        return np.asarray(a, np.float32), np.asarray(b_ant, np.float32), np.asarray(b_post, np.float32)

    @property
    def posterior_skin_y(self) -> float:
        return self.body_y + self.body_b * 0.92

    # ------------------------------------------------------------------ spine centreline
    def spine_xy(self, z: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Centre (x, y) of the vertebral bodies at height ``z`` (lordosis, kyphosis, mild scoliosis)."""
        z = np.asarray(z, dtype=np.float32)
        l1, t3 = self.level("L1"), self.level("T3")
        y0 = self.posterior_skin_y - 0.8 * self.fat_mm - 10.0 - 67.0 * self.scale
        lum = np.clip((z - self.z_s1) / (l1.z_top - self.z_s1), 0.0, 1.0)
        tho = np.clip((z - l1.z_top) / (t3.z_top - l1.z_top), 0.0, 1.0)
        y = y0 - self.lordosis_mm * np.sin(np.pi * lum) + self.kyphosis_mm * np.sin(np.pi * tho)
        y = y + 0.45 * np.clip(self.z_s1 - z, 0.0, None)  # sacrum slopes backwards
        x = self.body_x + self.scoliosis_mm * np.sin((z - self.z_s1) / 400.0 * 2 * np.pi + self.scoliosis_phase)
        return x.astype(np.float32), y.astype(np.float32)

    def vertebra_size(self, z: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Vertebral body width and depth interpolated along z (mm)."""
        zs = np.array([lv.z_mid for lv in self.levels])
        w = np.interp(z, zs, [lv.width for lv in self.levels])
        d = np.interp(z, zs, [lv.depth for lv in self.levels])
        return np.asarray(w, np.float32), np.asarray(d, np.float32)

    def canal_xy(self, z: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Centre of the vertebral canal (just behind the vertebral bodies)."""
        xs, ys = self.spine_xy(z)
        _, d = self.vertebra_size(z)
        return xs, (ys + d / 2 + 8.5 * self.scale).astype(np.float32)

    def canal_half_width(self, z: np.ndarray | float) -> np.ndarray:
        """Half the canal width: ~8.5 mm in the thoracic spine widening to ~11 mm in the lumbar spine."""
        t = smoothstep(self.level("L1").z_mid, self.level("T11").z_mid, z)
        return np.asarray(self.scale * (11.0 - 2.5 * t), np.float32)

    # ------------------------------------------------------------------ vessels
    @property
    def aorta_bifurcation_z(self) -> float:
        return self.level("L4").z_mid

    @property
    def aorta_radius(self) -> float:
        return 10.0 * self.scale + 0.04 * (self.age - 40.0)

    def aorta_xy(self, z: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Aortic centre: left-anterior of the spine in the abdomen, left-lateral in the chest."""
        xs, ys = self.spine_xy(z)
        w, d = self.vertebra_size(z)
        t = smoothstep(self.level("T12").z_mid, self.level("T10").z_mid, z)
        x = xs + (1 - t) * 10.0 + t * (w / 2 + 4.0)
        y = ys + (1 - t) * (-d / 2 - 13.0 * self.scale) + t * (-0.2 * d)
        return np.asarray(x, np.float32), np.asarray(y, np.float32)

    # ------------------------------------------------------------------ diaphragm
    def diaphragm_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height of the diaphragm surface above (x, y): domes near T10, posterior recesses near L1."""
        l1 = self.level("L1")
        a, b = self.body_a * 0.85, self.body_b * 0.9
        apex = np.where(x < self.body_x, self.dome_right, self.dome_left).astype(np.float32)
        ux = (np.abs(x - self.body_x) - 0.45 * a) / a
        uy = (y - self.body_y) / b
        post_drop = apex - (l1.z_top - 4.0)
        return apex - 70.0 * ux * ux - post_drop * np.clip(uy + 0.1, 0.0, None) ** 2 / 0.81 \
            - 35.0 * np.clip(-uy - 0.2, 0.0, None) ** 2


def _level(levels: tuple[SpineLevel, ...], name: str) -> SpineLevel:
    for lv in levels:
        if lv.name == name:
            return lv
    raise KeyError(name)


def _build_levels(z_s1: float, k: float) -> tuple[SpineLevel, ...]:
    rows = list(_LEVEL_TABLE)
    s2, s1 = rows[0], rows[1]
    out = [SpineLevel("S2", z_s1 - k * (s1[1] + s1[4] + s2[1]), z_s1 - k * (s1[1] + s1[4]), k * s2[2], k * s2[3]),
           SpineLevel("S1", z_s1 - k * s1[1], z_s1, k * s1[2], k * s1[3])]
    z = z_s1
    for name, h, w, d, disc in rows[2:]:
        bot = z + k * disc
        out.append(SpineLevel(name, bot, bot + k * h, k * w, k * d))
        z = bot + k * h
    return tuple(out)


# ============================================================================ painting
def paint_soft_tissues(canvas: Canvas, m: TorsoModel, rng: np.random.Generator) -> None:
    """Paint table, body wall, cavities, organs, vessels, bowel, lungs, muscles and canal contents."""
    _paint_body(canvas, m)
    _paint_table(canvas, m)
    _paint_back_and_psoas(canvas, m)
    _paint_vessels(canvas, m)
    _paint_thorax(canvas, m, rng)
    _paint_abdomen(canvas, m, rng)
    _paint_pelvis_soft(canvas, m)
    _paint_canal(canvas, m)


def _paint_body(canvas: Canvas, m: TorsoModel, chunk: int = 16) -> None:
    grid = canvas.grid
    x = grid.axis(2)[None, None, :]
    y = grid.axis(1)[None, :, None]
    zs = grid.axis(0)
    hu = m.hu
    for z0 in range(0, grid.shape[0], chunk):
        z = zs[z0:z0 + chunk]
        a, b_ant, b_post = m.body_axes(z)
        a = a[:, None, None]
        dx = x - np.float32(m.body_x)
        dy = y - np.float32(m.body_y)
        b = np.where(dy > 0, b_post[:, None, None], b_ant[:, None, None])
        r = np.sqrt((dx / a) ** 2 + (dy / b) ** 2)
        rho = np.sqrt(dx * dx + dy * dy)
        depth = rho * (1.0 / np.maximum(r, 1e-3) - 1.0)  # radial distance inside the skin
        cos_ant = -dy / np.maximum(rho, 1e-3)
        theta = np.arctan2(dy, dx)
        wobble = 0.2 * np.sin(2 * theta + m.wobble[0]) + 0.12 * np.sin(3 * theta + m.wobble[1])
        fat = np.float32(m.fat_mm) * (1.0 + 0.35 * cos_ant + wobble) + 2.0
        wall = np.float32(m.wall_mm) * (1.0 - 0.3 * np.abs(cos_ant))
        hv, tv = canvas.hu[z0:z0 + chunk], canvas.tissue[z0:z0 + chunk]
        inside = r <= 1.0
        cav = inside & (depth >= fat + wall)
        mus = inside & (depth >= fat) & ~cav
        fatm = inside & (depth >= 2.0) & (depth < fat)
        skin = inside & (depth < 2.0)
        for mask, val, code in ((skin, hu["skin"], Tissue.SKIN), (fatm, hu["fat"], Tissue.FAT),
                                (mus, hu["muscle"], Tissue.MUSCLE), (cav, hu["fat"] + 8.0, Tissue.VISCERAL_FAT)):
            hv[mask] = val
            tv[mask] = code


def _paint_table(canvas: Canvas, m: TorsoModel) -> None:
    grid = canvas.grid
    y_top = m.posterior_skin_y + 1.5
    box = grid.box((-260.0, y_top, -1e4), (260.0, y_top + 60.0, 1e4))
    if box is None:
        return
    x, y, _ = grid.coords(box)
    yt = y - (y_top - 0.00025 * x * x)
    shell = ((yt >= 0) & (yt < 3.0)) | ((yt >= 38.0) & (yt < 41.0))
    foam = (yt >= 3.0) & (yt < 38.0)
    free = (Tissue.AIR,)
    canvas.paint(box, foam & (np.abs(x) < 230), -930.0, Tissue.TABLE, only_on=free)
    canvas.paint(box, shell & (np.abs(x) < 230), m.hu["table"], Tissue.TABLE, only_on=free)


def _tube(canvas: Canvas, m: TorsoModel, z_lo: float, z_hi: float, cx, cy, rx, ry, hu: float, tissue: int,
          only_on=CAVITY, margin: float = 40.0, texture: tuple[np.random.Generator, float] | None = None) -> None:
    """Paint a vertical tube whose centre ``(cx(z), cy(z))`` and radii ``rx(z), ry(z)`` vary along z."""
    grid = canvas.grid
    zz = np.linspace(z_lo, z_hi, 9)
    xs, ys = np.asarray(cx(zz)), np.asarray(cy(zz))
    box = grid.box((float(xs.min()) - margin, float(ys.min()) - margin, z_lo),
                   (float(xs.max()) + margin, float(ys.max()) + margin, z_hi))
    if box is None:
        return
    x, y, z = grid.coords(box)
    d = sdf_ellipse(x - cx(z), y - cy(z), rx(z), ry(z))
    if texture is not None:  # mottled content (faeces): gas bubbles in a soft-tissue matrix
        hu = np.clip(hu + texture[1] * plane_wave_field((x, y, z), texture[0], 9.0, 5), -900.0, 60.0)
    canvas.paint(box, d <= 0, hu, tissue, only_on=only_on)


def _paint_back_and_psoas(canvas: Canvas, m: TorsoModel) -> None:
    k = m.scale
    hu = m.hu["muscle"]
    l1, t12, l5 = m.level("L1"), m.level("T12"), m.level("L5")
    z_top = m.levels[-1].z_top
    z_bot = m.levels[0].z_bot

    def sx(z):
        return m.spine_xy(z)[0]

    def sy(z):
        return m.spine_xy(z)[1]

    for side in (-1.0, 1.0):
        # erector spinae + multifidus, posterior to the transverse processes
        _tube(canvas, m, z_bot, z_top, lambda z, s=side: sx(z) + s * 33.0 * k,
              lambda z: sy(z) + 55.0 * k, lambda z: 36.0 * k * (1.0 - 0.2 * smoothstep(l1.z_top, l1.z_top + 80, z)),
              lambda z: 34.0 * k + 0 * z, hu, Tissue.MUSCLE, only_on=(Tissue.VISCERAL_FAT, Tissue.MUSCLE))
        # psoas: from T12 down, widening and moving anterolaterally into the pelvis
        def psoas_r(z):
            return 6.0 + 19.0 * k * np.clip((t12.z_bot - z) / (t12.z_bot - l5.z_mid), 0.0, 1.0)

        def psoas_x(z, s=side):
            w, _ = m.vertebra_size(z)
            return sx(z) + s * (w / 2 + psoas_r(z) * 0.8 + 2.0 + 0.5 * np.clip(m.z_s1 + 30 - z, 0, None))

        def psoas_y(z):
            _, d = m.vertebra_size(z)
            return sy(z) - 0.15 * d - 0.5 * np.clip(m.z_s1 + 30 - z, 0, None)

        _tube(canvas, m, z_bot, t12.z_bot, psoas_x, psoas_y, psoas_r, lambda z: psoas_r(z) * 0.85,
              hu, Tissue.MUSCLE)
        # quadratus lumborum, lateral to psoas between the 12th rib and the iliac crest
        _tube(canvas, m, l5.z_top, t12.z_mid, lambda z, s=side: sx(z) + s * 58.0 * k,
              lambda z: sy(z) + 18.0 * k, lambda z: 15.0 * k + 0 * z, lambda z: 9.0 * k + 0 * z, hu, Tissue.MUSCLE)


def _paint_vessels(canvas: Canvas, m: TorsoModel) -> None:
    """Aorta with iliac arteries, inferior vena cava (unenhanced blood)."""
    k, blood = m.scale, m.hu["blood"]
    bif = m.aorta_bifurcation_z
    top = m.levels[-1].z_top
    _tube(canvas, m, bif, top, lambda z: m.aorta_xy(z)[0], lambda z: m.aorta_xy(z)[1],
          lambda z: m.aorta_radius + 0 * z, lambda z: m.aorta_radius + 0 * z, blood, Tissue.BLOOD)
    for side in (-1.0, 1.0):
        _tube(canvas, m, m.z_s1 - 40.0, bif + 2.0,
              lambda z, s=side: m.aorta_xy(bif)[0] - 6.0 + s * 0.45 * (bif - z),
              lambda z: m.aorta_xy(bif)[1] + 0.15 * (bif - z),
              lambda z: 6.0 * k + 0 * z, lambda z: 6.0 * k + 0 * z, blood, Tissue.BLOOD)

    def ivc(z):
        xs, ys = m.spine_xy(z)
        _, d = m.vertebra_size(z)
        return xs - 23.0 * k, ys - d / 2 - 11.0 * k

    _tube(canvas, m, m.z_s1 - 10.0, m.dome_right, lambda z: ivc(z)[0], lambda z: ivc(z)[1],
          lambda z: 11.5 * k + 0 * z, lambda z: 8.5 * k + 0 * z, blood, Tissue.BLOOD)


def _paint_thorax(canvas: Canvas, m: TorsoModel, rng: np.random.Generator) -> None:
    grid = canvas.grid
    z_floor = m.level("L1").z_top - 10.0
    top = float(grid.axis(0)[-1]) + 1.0
    if top < z_floor:
        return
    k, hu = m.scale, m.hu
    a_cav, b_cav = m.body_a - m.fat_mm - m.wall_mm - 4.0, m.body_b - m.fat_mm - m.wall_mm - 2.0
    box = grid.box((m.body_x - a_cav, m.body_y - b_cav, z_floor), (m.body_x + a_cav, m.body_y + b_cav * 1.2, top))
    if box is None:
        return
    x, y, z = grid.coords(box)
    dia = m.diaphragm_z(x, y)
    above = z > dia
    # heart on the left hemidiaphragm, wrapped in pericardial fat
    j = m.organ_jitter["heart"]
    hc = (m.body_x + 0.17 * m.body_a + j[0], m.body_y - 0.27 * m.body_b + j[1], m.dome_left + 45.0 + j[2])
    hr = (0.4 * m.body_a, 0.4 * m.body_b, 85.0 * k)
    d_heart = sdf_ellipsoid((x, y, z), hc, hr)
    canvas.paint(box, above & (d_heart <= 4.0), hu["fat"] + 5.0, Tissue.VISCERAL_FAT, only_on=CAVITY)
    canvas.paint(box, above & (d_heart <= 0.0), hu["blood"], Tissue.BLOOD, only_on=CAVITY)
    # diaphragm muscle sheet
    canvas.paint(box, np.abs(z - dia) < 3.0, hu["muscle"], Tissue.MUSCLE, only_on=CAVITY)
    sxv, syv = m.spine_xy(z)
    w, d = m.vertebra_size(z)
    # oesophagus in front of the spine (the aorta is painted with the other vessels)
    oe = sdf_ellipse(x - (sxv + 4.0), y - (syv - d / 2 - 11.0), 8.0, 6.5)
    canvas.paint(box, above & (oe <= 0), hu["muscle"] - 5.0, Tissue.MUSCLE, only_on=CAVITY)
    # lungs: above the diaphragm, inside the chest wall, outside mediastinum and spine
    rc = sdf_ellipse(x - m.body_x, y - m.body_y, a_cav - 6.0, np.where(y > m.body_y, b_cav * 0.98, b_cav - 4.0))
    spine_block = sdf_ellipse(x - sxv, y - (syv + 22.0 * k), w / 2 + 12.0, d / 2 + 34.0 * k)
    medi = np.abs(x - (m.body_x + 6.0)) < 14.0 + 6.0 * np.clip((m.body_y - y) / m.body_b, 0, 1)
    lung = above & (rc <= 0) & (spine_block > 0) & ~(medi & (y < syv))
    grad = np.clip((y - (m.body_y - b_cav)) / (2 * b_cav), 0.0, 1.0)  # dependent lung is denser
    lung_hu = hu["lung"] - 25.0 + 70.0 * grad * grad
    painted = canvas.paint(box, lung, lung_hu, Tissue.LUNG, only_on=CAVITY)
    if painted.any():
        _paint_lung_vessels(canvas, box, painted, m, rng)


def _paint_lung_vessels(canvas: Canvas, box, lung: np.ndarray, m: TorsoModel, rng: np.random.Generator) -> None:
    grid = canvas.grid
    idx = np.argwhere(lung)
    n = min(260, 20 + idx.shape[0] // 1500)
    pick = idx[rng.integers(0, idx.shape[0], size=n)]
    x0 = grid.axis(2)[box[2]]
    y0 = grid.axis(1)[box[1]]
    z0 = grid.axis(0)[box[0]]
    for kz, ky, kx in pick:
        c = np.array([x0[kx], y0[ky], z0[kz]], dtype=np.float64)
        hilum = np.array([m.body_x + np.sign(c[0] - m.body_x) * 45.0, m.body_y, m.dome_right + 60.0])
        direction = c - hilum
        direction /= np.linalg.norm(direction) + 1e-6
        dist = float(np.linalg.norm(c - hilum))
        radius = float(np.clip(4.5 - dist / 40.0, 0.8, 4.0)) * float(rng.uniform(0.7, 1.2))
        length = float(rng.uniform(10.0, 30.0))
        a, b = c - direction * length / 2, c + direction * length / 2
        lo, hi = np.minimum(a, b) - radius, np.maximum(a, b) + radius
        sub = grid.box(lo, hi)
        if sub is None:
            continue
        d = sdf_capsule(grid.coords(sub), a, b, radius)
        canvas.paint(sub, d <= 0, m.hu["blood"], Tissue.BLOOD, only_on=(Tissue.LUNG,))


def _paint_abdomen(canvas: Canvas, m: TorsoModel, rng: np.random.Generator) -> None:
    grid = canvas.grid
    k, hu = m.scale, m.hu
    a, b = m.body_a, m.body_b
    jt = m.organ_jitter
    zlo, zhi = float(grid.axis(0)[0]) - 1.0, float(grid.axis(0)[-1]) + 1.0
    if zlo > m.dome_right + 5.0:
        return
    l1, l2 = m.level("L1"), m.level("L2")

    def below_dia(p):
        return p[2] < m.diaphragm_z(p[0], p[1])

    def organ(centre, radii, hu_val, tissue, rough=0.0, extra=None, only_on=CAVITY):
        lo = [centre[i] - radii[i] - 5 for i in range(3)]
        hi = [centre[i] + radii[i] + 5 for i in range(3)]
        box = grid.box(lo, hi)
        if box is None:
            return None, None
        p = grid.coords(box)
        d = sdf_ellipsoid(p, centre, radii)
        if rough:
            d = d + rough * plane_wave_field(p, rng, 60.0, 3)
        mask = (d <= 0) & below_dia(p)
        if extra is not None:
            mask &= extra(p)
        return box, canvas.paint(box, mask, hu_val, tissue, only_on=only_on)

    # kidneys with sinus fat, lateral to psoas (retroperitoneal: painted before the liver and spleen)
    for side, key, dz in ((-1.0, "kidney_r", -8.0), (1.0, "kidney_l", 8.0)):
        j = jt[key]
        zc = l2.z_top + dz * k + j[2]
        xs, ys = m.spine_xy(zc)
        c = (float(xs) + side * (72.0 * k + j[0] * 0.5), float(ys) + 8.0 + j[1] * 0.5, zc)
        box, painted = organ(c, (27.0 * k, 30.0 * k, 55.0 * k), hu["kidney"], Tissue.KIDNEY)
        if box is not None:
            p = grid.coords(box)
            sinus = sdf_ellipsoid(p, (c[0] - side * 15.0 * k, c[1] - 6.0, c[2]), (11.0 * k, 13.0 * k, 28.0 * k))
            canvas.paint(box, sinus <= 0, hu["fat"] + 15.0, Tissue.VISCERAL_FAT, only_on=(Tissue.KIDNEY,))
    # liver (right lobe + left lobe), gallbladder
    j = jt["liver"]
    organ((m.body_x - 0.4 * a + j[0], m.body_y - 0.05 * b + j[1], m.dome_right - 50.0 * k + j[2]),
          (0.5 * a, 0.68 * b, 62.0 * k), hu["liver"], Tissue.LIVER, rough=4.0)
    organ((m.body_x - 0.55 * a + j[0], m.body_y + 0.05 * b + j[1], m.dome_right - 100.0 * k + j[2]),
          (0.28 * a, 0.38 * b, 44.0 * k), hu["liver"], Tissue.LIVER, rough=3.0)
    organ((m.body_x + 0.02 * a + j[0], m.body_y - 0.5 * b + j[1], m.dome_right - 35.0 * k),
          (0.36 * a, 0.3 * b, 42.0 * k), hu["liver"], Tissue.LIVER, rough=3.0)
    j = jt["gallbladder"]
    organ((m.body_x - 0.24 * a + j[0], m.body_y - 0.42 * b + j[1], m.dome_right - 105.0 * k + j[2]),
          (14.0, 18.0, 32.0), hu["fluid"], Tissue.FLUID, only_on=(Tissue.LIVER, Tissue.VISCERAL_FAT))
    # spleen, stomach (fluid with an anterior air cap: the patient is supine)
    j = jt["spleen"]
    organ((m.body_x + 0.58 * a + j[0], m.body_y + 0.32 * b + j[1], m.dome_left - 60.0 * k + j[2]),
          (0.16 * a, 0.36 * b, 55.0 * k), hu["spleen"], Tissue.SPLEEN, rough=3.0)
    j = jt["stomach"]
    sc = (m.body_x + 0.3 * a + j[0], m.body_y - 0.22 * b + j[1], m.dome_left - 42.0 * k + j[2])
    sr = (0.26 * a, 0.3 * b, 40.0 * k)
    organ(sc, sr, hu["muscle"] - 5.0, Tissue.BOWEL_WALL, rough=3.0)
    organ(sc, (sr[0] - 4, sr[1] - 4, sr[2] - 4), hu["fluid"], Tissue.FLUID, rough=3.0, only_on=(Tissue.BOWEL_WALL,))
    organ(sc, (sr[0] - 4, sr[1] - 4, sr[2] - 4), hu["bowel_gas"], Tissue.BOWEL_GAS, rough=3.0,
          extra=lambda p: p[1] < sc[1] - 0.15 * b, only_on=(Tissue.FLUID,))
    # colon: ascending, descending, transverse; small-bowel loops fill what is left
    col_top = l1.z_mid
    for side, dx in ((-1.0, 0.62), (1.0, 0.66)):
        _tube(canvas, m, m.z_s1 - 20.0, col_top + 15.0, lambda z, s=side, f=dx: m.body_x + s * f * a + 0 * z,
              lambda z: m.body_y + 0.1 * b + 0 * z, lambda z: 22.0 * k + 0 * z, lambda z: 20.0 * k + 0 * z,
              hu["muscle"] - 5.0, Tissue.BOWEL_WALL)
        _tube(canvas, m, m.z_s1 - 20.0, col_top + 12.0, lambda z, s=side, f=dx: m.body_x + s * f * a + 0 * z,
              lambda z: m.body_y + 0.1 * b + 0 * z, lambda z: 19.0 * k + 0 * z, lambda z: 17.0 * k + 0 * z,
              hu["feces"], Tissue.FECES, only_on=(Tissue.BOWEL_WALL,), texture=(rng, 180.0))
    zt = l2.z_mid + float(rng.normal(0.0, 10.0))
    for rad, val, code, only in ((16.0, hu["muscle"] - 5.0, Tissue.BOWEL_WALL, CAVITY),
                                 (13.0, hu["bowel_gas"], Tissue.BOWEL_GAS, (Tissue.BOWEL_WALL,))):
        lo = (m.body_x - 0.7 * a, m.body_y - 0.75 * b - rad, zt - rad)
        hi = (m.body_x + 0.7 * a, m.body_y - 0.45 * b + rad, zt + rad)
        box = grid.box(lo, hi)
        if box is not None:
            d = sdf_capsule(grid.coords(box), (m.body_x - 0.6 * a, m.body_y - 0.55 * b, zt),
                            (m.body_x + 0.6 * a, m.body_y - 0.6 * b, zt + 8.0), rad * k)
            canvas.paint(box, d <= 0, val, code, only_on=only)
    _paint_small_bowel(canvas, m, rng, max(zlo, m.z_s1 - 60.0), min(zhi, l1.z_mid))


def _paint_small_bowel(canvas: Canvas, m: TorsoModel, rng: np.random.Generator, z_lo: float, z_hi: float) -> None:
    if z_hi <= z_lo:
        return
    grid = canvas.grid
    n = int(round((z_hi - z_lo) / 100.0 * 26))
    a, b = m.body_a, m.body_b
    contents = (("fluid", Tissue.FLUID, 0.55), ("bowel_gas", Tissue.BOWEL_GAS, 0.2), ("feces", Tissue.FECES, 0.25))
    probs = np.array([c[2] for c in contents])
    for _ in range(n):
        zc = float(rng.uniform(z_lo, z_hi))
        xs, ys = m.spine_xy(zc)
        c = (m.body_x + float(rng.uniform(-0.65, 0.65)) * a,
             float(rng.uniform(m.body_y - 0.8 * b, float(ys) - 10.0)), zc)
        r = float(rng.uniform(9.0, 16.0))
        direction = rng.normal(size=3)
        direction *= float(rng.uniform(10.0, 35.0)) / np.linalg.norm(direction)
        a0, a1 = np.asarray(c) - direction, np.asarray(c) + direction
        box = grid.box(np.minimum(a0, a1) - r - 1, np.maximum(a0, a1) + r + 1)
        if box is None:
            continue
        p = grid.coords(box)
        d = sdf_capsule(p, a0, a1, r)
        wall = canvas.paint(box, d <= 0, m.hu["muscle"] - 8.0, Tissue.BOWEL_WALL, only_on=CAVITY)
        name, code, _ = contents[int(rng.choice(len(contents), p=probs))]
        val = m.hu[name]
        if code == Tissue.FECES:
            val = np.clip(val + 180.0 * plane_wave_field(p, rng, 9.0, 5), -900.0, 60.0)
        canvas.paint(box, wall & (d <= -2.5), val, code)


def _paint_pelvis_soft(canvas: Canvas, m: TorsoModel) -> None:
    grid = canvas.grid
    if float(grid.axis(0)[0]) > m.z_s1 - 40.0:
        return
    # urinary bladder low in the pelvis
    c = (m.body_x, m.body_y - 0.35 * m.body_b, m.z_s1 - 95.0 * m.scale)
    box = grid.box((c[0] - 60, c[1] - 50, c[2] - 50), (c[0] + 60, c[1] + 50, c[2] + 50))
    if box is not None:
        d = sdf_ellipsoid(grid.coords(box), c, (50.0, 38.0, 42.0))
        canvas.paint(box, d <= 0, m.hu["fluid"], Tissue.FLUID, only_on=(Tissue.VISCERAL_FAT, Tissue.BOWEL_WALL))


def _paint_canal(canvas: Canvas, m: TorsoModel) -> None:
    """Epidural fat, thecal sac (CSF) and spinal cord (ending at L1-L2) inside the vertebral canal."""
    k = m.scale
    z_lo, z_hi = m.levels[0].z_bot, m.levels[-1].z_top
    conus = m.level("L1").z_bot

    def cx(z):
        return m.canal_xy(z)[0]

    def cy(z):
        return m.canal_xy(z)[1]

    free = (Tissue.VISCERAL_FAT, Tissue.MUSCLE, Tissue.FAT, Tissue.BLOOD)
    _tube(canvas, m, z_lo, z_hi, cx, cy, m.canal_half_width, lambda z: 8.0 * k + 0 * z,
          m.hu["fat"], Tissue.VISCERAL_FAT, only_on=free)
    _tube(canvas, m, m.z_s1 - 30.0, z_hi, cx, cy, lambda z: 8.0 * k + 0 * z, lambda z: 6.5 * k + 0 * z,
          m.hu["csf"], Tissue.CSF, only_on=(Tissue.VISCERAL_FAT,))
    _tube(canvas, m, conus, z_hi, cx, cy, lambda z: 4.5 * k + 0 * z, lambda z: 3.5 * k + 0 * z,
          m.hu["cord"], Tissue.SPINAL_CORD, only_on=(Tissue.CSF,))

