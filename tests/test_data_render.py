"""Rendering: masked boxes cover exactly their field, VQA rows show their field's masked view, portraits."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from icu_tasks.data import schema
from icu_tasks.data.portrait import N_COMBOS, combo, portrait
from icu_tasks.data.profiles import make_profiles
from icu_tasks.data.render import MASK_COLOR, mask_layout, render_document, render_views

SIZES = (160, 448)  # the tests' small size and the default


@pytest.fixture(scope="module")
def people():
    return make_profiles(2, seed=7)  # 2 medical, 2 labor


def _crop(img: Image.Image, box) -> np.ndarray:
    return np.asarray(img.crop(tuple(box)))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("layout", [0, 1])
def test_box_covers_every_pixel_of_its_field(people, size, layout):
    """Drawing a field's value changes pixels only inside its box, and some inside it (the ink)."""
    for p in people:
        full = render_document(p, layout, size)
        for name in schema.FIELDS[p.domain]:
            without = render_document(p, layout, size, omit=frozenset({name}))
            diff = np.any(np.asarray(full.image) != np.asarray(without.image), axis=-1)
            ys, xs = np.nonzero(diff)
            assert len(xs) > 0, (p.profile_id, name)  # the value is drawn
            x0, y0, x1, y1 = full.boxes[name]
            assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1, (
                name,
                full.boxes[name],
            )


@pytest.mark.parametrize("size", SIZES)
def test_masked_view_blacks_out_exactly_the_box(people, size):
    for p in people:
        images, boxes = render_views(p, size)
        for name in schema.FIELDS[p.domain]:
            layout = mask_layout(p.domain, name)
            full = np.asarray(images[f"full_{layout}"])
            masked = np.asarray(images[f"masked_{name}"])
            x0, y0, x1, y1 = boxes[layout][name]
            assert (masked[y0:y1, x0:x1] == MASK_COLOR).all()
            assert len(np.unique(full[y0:y1, x0:x1].reshape(-1, 3), axis=0)) > 1  # text ink on paper
            outside = np.ones(full.shape[:2], bool)
            outside[y0:y1, x0:x1] = False
            assert (masked[outside] == full[outside]).all()


def test_boxes_do_not_overlap_and_fit_the_canvas(people):
    for p in people:
        for layout in (0, 1):
            boxes = list(render_document(p, layout, 448).boxes.values())
            for i, a in enumerate(boxes):
                assert 0 <= a[0] < a[2] <= 448 and 0 <= a[1] < a[3] <= 448
                for b in boxes[i + 1 :]:
                    assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


def test_masked_views_use_both_layouts():
    for domain in schema.DOMAINS:
        assert {mask_layout(domain, f) for f in schema.FIELDS[domain]} == {0, 1}


def test_each_vqa_row_shows_its_field_masked(small_data_dir):
    """Per VQA row: its field's box is black in its image, every other field's box is not."""
    profiles = {r["profile_id"]: r for r in pq.read_table(small_data_dir / schema.PROFILES_FILE).to_pylist()}
    questions = {d: dict(schema.QUESTIONS[d]) for d in schema.DOMAINS}
    rows = [r for r in pq.read_table(small_data_dir / schema.QA_FILE).to_pylist() if r["view"] == "vqa"]
    checked = 0
    for row in rows:
        if row["split"] == "utility":
            continue
        masked_field = questions[row["domain"]][row["field"]]
        layout = mask_layout(row["domain"], masked_field)
        boxes = json.loads(profiles[row["profile_id"]]["boxes"])[str(layout)]
        assert row["image"] == f"images/{row['profile_id']}/masked_{masked_field}.png"
        img = np.asarray(Image.open(small_data_dir / row["image"]).convert("RGB"))
        for name, (x0, y0, x1, y1) in boxes.items():
            black = (img[y0:y1, x0:x1] == MASK_COLOR).all()
            assert black == (name == masked_field), (row["id"], name)
        checked += 1
    assert checked == 18 * 8


def test_portrait_pairs_are_unique_and_deterministic():
    pairs = {combo(i) for i in range(N_COMBOS)}
    assert len(pairs) == N_COMBOS >= 1020  # 1,000 profiles + 20 specimens at full scale
    a = np.asarray(portrait("med-0001", 0, 64))
    assert (a == np.asarray(portrait("med-0001", 0, 64))).all()
    assert (a != np.asarray(portrait("med-0002", 1, 64))).any()
    # Neighbouring profiles differ in the background colour, the feature most visible at 64 px.
    assert combo(0)[0] != combo(1)[0]
