"""Document rendering with Pillow: two layouts per domain, plus masked views that black out one field.

All geometry is designed on a 448-unit square canvas and scaled to the requested size. Text uses Pillow's
bundled font (``ImageFont.load_default(size=...)``), so images are identical on every machine with the same
Pillow version. :func:`render_document` returns the value box of every sensitive field; a masked view is the
full view with exactly that box filled black (:data:`MASK_COLOR`).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from icu_tasks.data import schema
from icu_tasks.data.defaults import IMAGE_SIZE
from icu_tasks.data.portrait import portrait
from icu_tasks.data.profiles import SYNTHETIC_NOTICE, Profile
from icu_tasks.errors import DataError

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1), pixel box with exclusive right/bottom edges, as ``Image.crop`` takes it."""

BASE = IMAGE_SIZE
MASK_COLOR = (0, 0, 0)
TITLES = {"medical": "MEDICAL REPORT", "labor": "EMPLOYMENT CONTRACT"}
#: The field shown as the document's letterhead (the issuing institution).
INSTITUTION_FIELD = {"medical": "hospital", "labor": "employer"}
LABELS: dict[str, str] = {
    "patient_name": "Patient name",
    "employee_name": "Employee name",
    "date_of_birth": "Date of birth",
    "id_number": "ID number",
    "address": "Address",
    "diagnosis": "Diagnosis",
    "medication": "Medication",
    "attending_doctor": "Attending physician",
    "employer": "Employer",
    "salary": "Annual salary",
    "position": "Position",
    "contract_dates": "Contract period",
    "hospital": "Hospital",
}
ACCENT = {"medical": (22, 110, 120), "labor": (34, 52, 110)}
_PORTRAIT = 144  # portrait side in base units (both layouts), about a third of the page
PNG_COMPRESS_LEVEL = 6
_CHUNK = 8  # people per worker task


@dataclass(frozen=True)
class Rendered:
    """A rendered document view and the value box of every sensitive field."""

    image: Image.Image
    boxes: dict[str, Box]


@functools.lru_cache(maxsize=256)
def font(px: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``px`` pixels (cached per process)."""
    return ImageFont.load_default(size=max(1, px))


def body_fields(domain: str) -> tuple[str, ...]:
    """The sensitive fields drawn in the document body (all but the letterhead institution)."""
    return tuple(f for f in schema.FIELDS[domain] if f != INSTITUTION_FIELD[domain])


def mask_layout(domain: str, field_name: str) -> int:
    """The layout a field's masked view is drawn on: field index mod 2, so VQA rows use both layouts."""
    return schema.FIELDS[domain].index(field_name) % schema.FULL_LAYOUTS


class _Canvas:
    """Scaled drawing helpers that record each field's value box."""

    def __init__(self, size: int, paper: tuple[int, int, int], omit: frozenset[str]) -> None:
        self.size, self.s, self.omit = size, size / BASE, omit
        self.image = Image.new("RGB", (size, size), paper)
        self.draw = ImageDraw.Draw(self.image)
        self.boxes: dict[str, Box] = {}

    def p(self, v: float) -> int:
        return round(v * self.s)

    def text(self, x: float, y: float, text: str, px: float, fill, max_w: float | None = None):
        size = self.p(px)
        f = font(size)
        if max_w is not None:  # shrink until the text fits (down to half size)
            while size > max(4, self.p(px) // 2) and self.draw.textlength(text, font=f) > self.p(max_w):
                size -= 1
                f = font(size)
        self.draw.text((self.p(x), self.p(y)), text, font=f, fill=fill)
        return self.draw.textbbox((self.p(x), self.p(y)), text, font=f)

    def value(self, name: str, x: float, y: float, text: str, px: float, fill, max_w: float) -> None:
        """Draw a field value (unless omitted) and record its box: the ink box plus a small margin."""
        if name in self.omit:
            bbox = self.draw.textbbox((self.p(x), self.p(y)), text, font=font(self.p(px)))
        else:
            bbox = self.text(x, y, text, px, fill, max_w)
        pad = max(1, self.p(2))
        x0, y0, x1, y1 = bbox
        self.boxes[name] = (
            max(0, x0 - pad),
            max(0, y0 - pad),
            min(self.size, x1 + pad),
            min(self.size, y1 + pad),
        )

    def rect(self, box, **kw) -> None:
        self.draw.rectangle([self.p(v) for v in box], **kw)

    def line(self, pts, fill, width: float = 1) -> None:
        self.draw.line([self.p(v) for v in pts], fill=fill, width=max(1, self.p(width)))

    def paste(self, img: Image.Image, x: float, y: float) -> None:
        self.image.paste(img, (self.p(x), self.p(y)))


def _stamp(c: _Canvas, y: float, specimen: bool) -> None:
    text = ("SPECIMEN - " if specimen else "") + SYNTHETIC_NOTICE
    x0, y0, x1, y1 = c.text(24, y, text, 13, fill=(190, 30, 30))
    pad = c.p(5)
    c.draw.rectangle([x0 - pad, y0 - pad, x1 + pad, y1 + pad], outline=(190, 30, 30), width=max(1, c.p(2)))


def _layout_letterhead(c: _Canvas, profile: Profile, face: Image.Image, specimen: bool) -> None:
    """Layout 0: coloured letterhead band, portrait top right, label-over-value list on the left."""
    d = profile.domain
    c.rect((0, 0, BASE, 78), fill=ACCENT[d])
    inst = INSTITUTION_FIELD[d]
    c.value(inst, 16, 12, profile.fields[inst], 22, fill=(255, 255, 255), max_w=BASE - 32)
    c.text(16, 50, TITLES[d], 14, fill=(205, 228, 235))
    px, py = BASE - 16 - _PORTRAIT, 92
    c.paste(face, px, py)
    y = 90.0
    for name in body_fields(d):
        c.text(16, y, LABELS[name], 11, fill=(105, 105, 105))
        beside_face = y + 36 < py + _PORTRAIT + 6
        max_w = (px - 26) if beside_face else (BASE - 32)
        c.value(name, 16, y + 14, profile.fields[name], 16, fill=(15, 15, 15), max_w=max_w)
        y += 44
    _stamp(c, 410, specimen)


def _layout_form(c: _Canvas, profile: Profile, face: Image.Image, specimen: bool) -> None:
    """Layout 1: accent stripe, portrait top left with the institution beside it, a bordered table below."""
    d = profile.domain
    c.rect((0, 0, 10, BASE), fill=ACCENT[d])
    c.paste(face, 24, 20)
    inst = INSTITUTION_FIELD[d]
    x = 24 + _PORTRAIT + 14
    c.value(inst, x, 30, profile.fields[inst], 19, fill=ACCENT[d], max_w=BASE - x - 16)
    c.text(x, 64, TITLES[d], 13, fill=(90, 90, 90))
    c.text(x, 90, "Confidential record", 11, fill=(120, 120, 120))
    top, row_h, split_x = 184.0, 30.0, 168.0
    grid = (175, 182, 195)
    for i, name in enumerate(body_fields(d)):
        y = top + i * row_h
        if i % 2 == 0:
            c.rect((24, y, BASE - 24, y + row_h), fill=(232, 237, 246))
        c.text(30, y + 9, LABELS[name], 12, fill=(70, 70, 80))
        c.value(
            name, split_x + 8, y + 7, profile.fields[name], 15, fill=(10, 10, 10), max_w=BASE - split_x - 40
        )
        c.line((24, y, BASE - 24, y), fill=grid)
    bottom = top + len(body_fields(d)) * row_h
    c.line((24, bottom, BASE - 24, bottom), fill=grid)
    c.line((split_x, top, split_x, bottom), fill=grid)
    _stamp(c, 410, specimen)


_LAYOUTS = (
    ((250, 250, 246), _layout_letterhead),
    ((244, 247, 252), _layout_form),
)


def portrait_for(profile: Profile, size: int) -> Image.Image:
    """The person's portrait at the pixel size both layouts use for a ``size`` px document."""
    return portrait(profile.profile_id, profile.index, round(_PORTRAIT * size / BASE))


def render_document(
    profile: Profile,
    layout: int,
    size: int,
    *,
    masked_field: str | None = None,
    specimen: bool = False,
    omit: frozenset[str] = frozenset(),
    face: Image.Image | None = None,
) -> Rendered:
    """Render one view of ``profile``'s document.

    ``layout`` is 0 or 1; ``masked_field`` blacks out that field's value box; ``omit`` leaves the named fields'
    values undrawn (their boxes are still returned; used by tests to check that a box covers its field's
    pixels); ``face`` is a pre-rendered :func:`portrait_for` (rendered here if None).
    """
    if layout not in range(len(_LAYOUTS)):
        raise ValueError(f"layout must be 0 or 1, got {layout}")
    paper, draw_layout = _LAYOUTS[layout]
    canvas = _Canvas(size, paper, omit)
    draw_layout(canvas, profile, face if face is not None else portrait_for(profile, size), specimen)
    if masked_field is not None:
        canvas.image.paste(MASK_COLOR, canvas.boxes[masked_field])
    return Rendered(canvas.image, canvas.boxes)


def masked_view(full: Rendered, field_name: str) -> Image.Image:
    """A copy of the full view with ``field_name``'s value box filled black (box edges exclusive)."""
    img = full.image.copy()
    x0, y0, x1, y1 = full.boxes[field_name]
    img.paste(MASK_COLOR, (x0, y0, x1, y1))
    return img


def render_views(profile: Profile, size: int) -> tuple[dict[str, Image.Image], dict[int, dict[str, Box]]]:
    """All views of a profile: ``full_0``, ``full_1`` and ``masked_<field>`` per sensitive field.

    Returns (view name -> image, layout -> field -> box).
    """
    face = portrait_for(profile, size)
    fulls = [render_document(profile, k, size, face=face) for k in range(schema.FULL_LAYOUTS)]
    images = {f"full_{k}": r.image for k, r in enumerate(fulls)}
    for name in schema.FIELDS[profile.domain]:
        images[f"masked_{name}"] = masked_view(fulls[mask_layout(profile.domain, name)], name)
    return images, {k: r.boxes for k, r in enumerate(fulls)}


# ----------------------------------------------------------------------------- writing images (workers)


@dataclass
class RenderJob:
    """Render every view of one person and write them as PNG: ``views`` maps view name -> relative path.

    A profile's views are ``full_K`` and ``masked_<field>``; a specimen has the single view ``specimen``
    drawn on ``specimen_layout``.
    """

    profile: Profile
    views: dict[str, str]
    image_size: int
    specimen_layout: int | None = None


def _run_job(job: RenderJob, root: str) -> tuple[str, dict]:
    """Worker body: render, save the PNGs under ``root``, return (profile id, layout -> field -> box)."""
    if job.specimen_layout is None:
        images, boxes = render_views(job.profile, job.image_size)
    else:
        done = render_document(job.profile, job.specimen_layout, job.image_size, specimen=True)
        images, boxes = {"specimen": done.image}, {job.specimen_layout: done.boxes}
    for view, rel in job.views.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        images[view].save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return job.profile.profile_id, {str(k): {f: list(b) for f, b in v.items()} for k, v in boxes.items()}


def _run_chunk(args: tuple[list[RenderJob], str]) -> list[tuple[str, dict]]:
    jobs, root = args
    return [_run_job(j, root) for j in jobs]


def render_all(jobs: list[RenderJob], root: Path, *, workers: int, progress: bool) -> dict[str, dict]:
    """Run the render jobs (in ``workers`` spawned processes when > 1) with a tqdm bar counting images.

    Returns profile id -> layout -> field -> box. Output files do not depend on ``workers``. Raises
    :class:`DataError` when a worker process ends abruptly (killed, or unable to start).
    """
    n_views = {j.profile.profile_id: len(j.views) for j in jobs}
    tasks = [(jobs[i : i + _CHUNK], str(root)) for i in range(0, len(jobs), _CHUNK)]
    out: dict[str, dict] = {}
    with tqdm(total=sum(n_views.values()), desc="rendering", unit="img", disable=not progress) as bar:
        for done in _chunk_results(tasks, workers):
            out.update(done)
            bar.update(sum(n_views[pid] for pid, _ in done))
    return out


def _chunk_results(
    tasks: list[tuple[list[RenderJob], str]], workers: int
) -> Iterator[list[tuple[str, dict]]]:
    """Each chunk's results as it completes: in this process, or in a pool of spawned processes, whose
    breaking (a worker killed, or one that could not start) is an error rather than a wait for ever."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(_run_chunk, tasks)
        return
    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context("spawn"))
    try:
        for future in as_completed([pool.submit(_run_chunk, t) for t in tasks]):
            yield future.result()
    except BrokenProcessPool as err:
        raise DataError(
            f"a rendering worker process ended abruptly ({err}); if it could not start, the script that calls "
            'generate() lacks an `if __name__ == "__main__":` guard (or pass workers=1)'
        ) from err
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def profile_images(p: Profile) -> dict[str, str]:
    """view name -> relative image path for one profile."""
    views = [f"full_{k}" for k in range(schema.FULL_LAYOUTS)] + [
        f"masked_{f}" for f in schema.FIELDS[p.domain]
    ]
    return {v: f"{schema.IMAGES_DIR}/{p.profile_id}/{v}.png" for v in views}
