"""Timings of the io area: layered EXR write/read per compression, and colour
conversion through OpenImageIO vs the sRGB formula in torch.

    python bench/bench_io.py [--size 256] [--repeat 3]

Prints a table and ratios (relative to zip / to the torch formula). Numbers
depend on the machine; they are never asserted in tests.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from livelayers.engine.io import (COMPRESSIONS, LayerSpec, load_image, read_exr_layers, to_linear,
                                  write_layered_exr)

from _timing import best_of, check_size, row  # bench/_timing.py


def _layers(size: int, with_data: bool) -> dict:
    g = torch.Generator().manual_seed(0)
    rgba = torch.rand(4, size, size, generator=g)
    layers = {"edit": LayerSpec(rgba, encoding="linear"), "source": torch.rand(3, size, size, generator=g),
              "composite": torch.rand(3, size, size, generator=g)}
    if with_data:
        layers.update(relevancy=torch.rand(1, size, size, generator=g),
                      uv_fg=torch.rand(2, size, size, generator=g))
    return layers


def measure_exr(size: int, repeat: int) -> dict:
    """compression -> (write s, read s, load s, size KiB) of the bench's layered EXR."""
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for comp in COMPRESSIONS:
            layers = _layers(size, with_data=comp not in ("dwaa", "dwab"))
            path = Path(tmp) / f"{comp}.exr"
            w = best_of(lambda: write_layered_exr(path, layers, compression=comp), repeat)
            r = best_of(lambda: read_exr_layers(path), repeat)
            ld = best_of(lambda: load_image(path, layer="source"), repeat)
            rows[comp] = (w, r, ld, path.stat().st_size / 1024)
    return rows


def bench_exr(size: int, repeat: int) -> None:
    print(f"\nLayered EXR, {size}x{size}: edit(RGBA, +unprefixed) source composite [+ relevancy uv_fg]")
    print(f"{'compression':<12}{'write ms':>10}{'read ms':>10}{'load ms':>10}{'size KiB':>10}{'write/zip':>11}{'size/zip':>10}")
    rows = measure_exr(size, repeat)
    zw, _, _, zs = rows["zip"]
    for comp, (w, r, ld, kib) in rows.items():
        note = " (no data layers)" if comp in ("dwaa", "dwab") else ""
        print(f"{comp:<12}{w * 1e3:>10.1f}{r * 1e3:>10.1f}{ld * 1e3:>10.1f}{kib:>10.0f}"
              f"{w / zw:>11.2f}{kib / zs:>10.2f}{note}")


def measure_colour(size: int, repeat: int) -> tuple[float, float]:
    """(OIIO colorconvert s, torch sRGB formula s) on a 4x3xsizexsize batch."""
    x = torch.rand(4, 3, size, size)

    def formula():
        torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)

    return best_of(lambda: to_linear(x), repeat), best_of(formula, repeat)


def bench_colour(size: int, repeat: int) -> None:
    t_oiio, t_torch = measure_colour(size, repeat)
    print(f"\nsRGB -> lin_rec709, 4x3x{size}x{size}")
    print(f"{'method':<22}{'ms':>10}{'ratio':>8}")
    print(f"{'OIIO colorconvert':<22}{t_oiio * 1e3:>10.1f}{t_oiio / t_torch:>8.2f}")
    print(f"{'torch formula':<22}{t_torch * 1e3:>10.1f}{1.0:>8.2f}")


def rows(size: str) -> list[dict]:
    """The table rows of ``python -m livelayers bench`` (quick: 64 px, best of 3;
    reference: 256 px, best of 3, the script's defaults). No reference design:
    the notes compare each compression with zip, and OIIO's colour conversion
    (OCIO-managed) with the bare sRGB formula."""
    px, repeat = (64, 3) if check_size(size) == "quick" else (256, 3)
    out = []
    exr = measure_exr(px, repeat)
    zs = exr["zip"][3]
    for comp, (w, r, _, kib) in exr.items():
        extra = ", no data layers" if comp in ("dwaa", "dwab") else ""
        out.append(row("io", f"write layered EXR {px}², {comp}", "ms", w * 1e3,
                       note=f"read {r * 1e3:.1f} ms, {kib:.0f} KiB ({kib / zs:.2f}x zip){extra}"))
    out.append(row("io", f"read layered EXR {px}², zip (the default)", "ms", exr["zip"][1] * 1e3))
    t_oiio, t_torch = measure_colour(px, repeat)
    out.append(row("io", f"sRGB -> linear 4x3x{px}², OIIO colorconvert", "ms", t_oiio * 1e3,
                   note=f"the bare sRGB formula in torch: {t_torch * 1e3:.2f} ms"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_exr(args.size, args.repeat)
    bench_colour(args.size, args.repeat)


if __name__ == "__main__":
    main()
