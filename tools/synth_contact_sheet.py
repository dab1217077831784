"""Write ``docs/images/synth_examples.png``: a 3x3 grid of synthetic images (256x256) from ``hmr.data.synth``.

    .venv/bin/python tools/synth_contact_sheet.py [--seed 0] [--out docs/images/synth_examples.png]

Image ``i`` is the one a run with that seed writes for index ``i`` at 256x256.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hmr.data.synth import SynthGenerator, image_rng  # noqa: E402


def contact_sheet(seed: int = 0, size: int = 256, rows: int = 3, gap: int = 4) -> np.ndarray:
    gen = SynthGenerator(image_size=(size, size))
    try:
        images = [gen.image(image_rng(seed, i)).image for i in range(rows * rows)]
    finally:
        gen.close()
    side = rows * size + (rows + 1) * gap
    sheet = np.full((side, side, 3), 255, np.uint8)
    for i, img in enumerate(images):
        y, x = gap + (i // rows) * (size + gap), gap + (i % rows) * (size + gap)
        sheet[y : y + size, x : x + size] = img
    return sheet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "synth_examples.png"))
    args = ap.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(contact_sheet(args.seed), cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
