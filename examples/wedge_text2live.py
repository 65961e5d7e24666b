"""Build the Text2LIVE graph in Python, then wedge it: 3 prompts x 2 seeds, one sheet.

    python examples/wedge_text2live.py --out out/wedge_text2live
    python examples/wedge_text2live.py --steps 3 --out /tmp/w   # a quick look

``build_graph()`` is examples/text2live.json written in code (the two are
the same JSON; tests/test_graph_api.py checks it). The wedge runs on the toy
models offline, at a training size of 64 px, and writes
OUT/<variant>/text2live.0001.exr per variant plus OUT/sheet.png and
OUT/sheet.exr. See docs/scripting.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROMPTS = ["blue circle", "green circle", "purple circle"]
SEEDS = [0, 1]


def build_graph():
    """examples/text2live.json, built node by node (ids 1-4 in the order added)."""
    from livelayers.graph import Graph
    g = Graph()
    plate = g.add("LL_LoadImage", path="examples/assets/toy_scene.png")
    clip = g.add("LL_LoadCLIP", model="toy-clip")
    edit = g.add("LL_Text2LIVE", clip=clip[0], image=plate[0], prompt="blue circle",
                 roi_text="red circle", steps=150, resolution=0, views=8, relevancy_blocks="all",
                 generator_scales=4, generator_channels=32, run_dir="out/text2live_run")
    g.add("LL_SaveEXR", edit_image=edit["edit"], edit_alpha=edit["alpha"], source=plate[0],
          composite=edit["composite"], alpha=edit["alpha"], relevancy=edit["relevancy"],
          greenscreen=edit["greenscreen"], plate=plate["plate"], path="out/text2live.####.exr",
          frames="1", edit_prompt="blue circle", seed=0)
    return g


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/wedge_text2live", help="wedge folder")
    ap.add_argument("--steps", type=int, default=60, help="training steps per variant")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # toy models only: never download
    import torch
    torch.set_num_threads(1)  # one core per variant; the examples run on shared machines

    g = build_graph()
    g.set("1.path", str(HERE / "assets" / "toy_scene.png"))  # runs from any folder
    g.set("3.steps", args.steps)
    g.set("3.resolution", 64)  # train small; the outputs are still the plate's 128 px
    wedge = g.wedge({"3.prompt": PROMPTS, "3.seed": SEEDS}, out=args.out)

    def report(step, total, info):
        if step == total or info.get("node") == "LL_SaveEXR":
            print(f"  {info.get('variant', '')} {100 * step // total}%", file=sys.stderr)

    result = wedge.run(progress=report, log=lambda line: print(line, file=sys.stderr))
    print(f"{len(result.ran)} variants run, {len(result.skipped)} already complete")
    for path in result.sheet:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
