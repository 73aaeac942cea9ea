"""Plot one column of a stats.jsonl against another as a small PNG (Pillow only; no plotting library needed).

python scripts/plot_stats.py RUN/stats.jsonl --x kimg --y loss --out loss.png [--logy]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from PIL import Image, ImageDraw

W, H, PAD = 640, 360, 48


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stats", type=Path)
    ap.add_argument("--x", default="step")
    ap.add_argument("--y", default="loss")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--logy", action="store_true")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    lines = [json.loads(line) for line in args.stats.read_text().splitlines() if line.strip()]
    xs = [float(r[args.x]) for r in lines]
    ys = [float(r[args.y]) for r in lines]
    fy = math.log10 if args.logy else (lambda v: v)
    x0, x1, y0, y1 = min(xs), max(xs), min(map(fy, ys)), max(map(fy, ys))
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.rectangle([PAD, PAD // 2, W - PAD // 2, H - PAD], outline="black")

    def px(x, y):
        return (
            PAD + (x - x0) / (x1 - x0 or 1) * (W - 1.5 * PAD),
            H - PAD - (fy(y) - y0) / (y1 - y0 or 1) * (H - 1.5 * PAD),
        )

    d.line([px(x, y) for x, y in zip(xs, ys)], fill=(31, 119, 180), width=2)
    for frac in (0, 0.5, 1):
        yv = y0 + frac * (y1 - y0)
        label = f"{10**yv:.3g}" if args.logy else f"{yv:.3g}"
        d.text((4, H - PAD - frac * (H - 1.5 * PAD) - 6), label, fill="black")
        d.text((PAD + frac * (W - 1.5 * PAD) - 12, H - PAD + 6), f"{x0 + frac * (x1 - x0):.4g}", fill="black")
    d.text((W // 2 - 40, H - 18), args.x, fill="black")
    d.text((PAD + 6, PAD // 2 + 4), args.title or f"{args.y} ({'log scale' if args.logy else 'linear'})", fill="black")
    img.save(args.out)


if __name__ == "__main__":
    main()
