"""The amortised region network earns its name: on held-out toy tasks it
reaches (nearly) the exhaustive search's quality with 1/M of its editor runs.

Tasks (toyworld/train_regions.py, scene seeds the network never saw):
recolour one object of a 1-2 object scene, prompt "a <new colour> <shape>",
source prompt "a <old colour> <shape>", toy DINO (K = 3 anchors), M = 7
boxes, toy recolour editor (foreground), toy CLIP v2. Every proposal is edited
once; exhaustive, amortised (the committed toy-regions network) and random
choice are read off the same table (an amortised run edits a subset of the
exhaustive run's proposals with the same deterministic editor; the last test
checks this against real ``learn_regions`` runs). "Covers" = at least 80 %
of the named object inside the box and the box at most 4x the object's
bounding box. Numbers and margins: docs/regions.md.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from livelayers.toyworld import train_regions as T

N_64 = 120   # tasks per seed at 64 px (3 seeds): the docs' 120 of each seed
N_OTHER = 40  # tasks at 32 and 128 px (seed 101)
# Thresholds below the measurements (docs/regions.md). The tasks and the committed network
# (trained against toy CLIP v2) are fixed, so the measured values are exact for these files: on
# these 120 x 3 tasks at 64 px amortised r=1 / exhaustive measured 0.984 pooled (per seed 1.00,
# 0.97, 0.985), r=2 1.042, the fixed middle box 0.84; 40 tasks at 32 / 128 px keep 1.05 / 1.17.
# (40 tasks per seed, as with toy CLIP v1, was too few: one task moves a seed's share by 0.05.)
# AMORTISED_SHARE is the goal itself (90 % of exhaustive), now asked of every seed too.
AMORTISED_SHARE = 0.90   # amortised r=1 / exhaustive, pooled over the 3 seeds at 64 px
PER_SEED_SHARE = 0.90    # the same, every seed: smallest measured 0.97 (v1: 0.85, measured 0.90)
R2_SHARE = 0.95          # amortised r=2 / exhaustive, pooled
EXHAUSTIVE_OVER_RANDOM = 0.12   # exhaustive - random proposal, every set: smallest measured 0.182
ANCHOR_ON_OBJECT = 0.80  # top-1 anchor on an object, every set: smallest measured 0.90


@pytest.fixture(scope="module")
def tables(one_thread):
    dino, clip = T.load_toy_models()
    out = {(64, s): T.build_tables(dino, clip, N_64, s, (64,), (1.0,)) for s in T.EVAL_SEEDS}
    for size in (32, 128):
        out[(size, T.EVAL_SEEDS[0])] = T.build_tables(dino, clip, N_OTHER, T.EVAL_SEEDS[0], (size,), (1.0,))
    return out


@pytest.fixture(scope="module")
def model():
    from livelayers.engine.regions import load_region_model
    return load_region_model("toy-regions")


@pytest.mark.slow
def test_amortised_r1_keeps_exhaustive_quality_with_1_over_m_runs(tables, model):
    reports = [T.evaluate_tables(tables[(64, s)], model.network) for s in T.EVAL_SEEDS]
    ex = np.array([r["exhaustive"]["hit"] for r in reports])
    a1 = np.array([r["amortised r=1"]["hit"] for r in reports])
    a2 = np.array([r["amortised r=2"]["hit"] for r in reports])
    rnd = np.array([r["random"]["hit"] for r in reports])
    middle = np.array([r["fixed middle box"]["hit"] for r in reports])
    print(f"64px per seed: exhaustive {ex}, amortised r=1 {a1}, r=2 {a2}, random {rnd}, middle box {middle}")
    for r in reports:   # editor runs per image: K·M vs K·1 (K = 3 anchors found on every scene)
        assert r["amortised r=1"]["editor_runs"] * len(T.BOX_SIZES) <= r["exhaustive"]["editor_runs"]
        assert r["amortised r=2"]["editor_runs"] == 2 * r["amortised r=1"]["editor_runs"]
        assert r["fixed middle box"]["editor_runs"] == r["amortised r=1"]["editor_runs"]
        assert 0.0 <= r["fixed middle box"]["hit"] <= r["oracle"]["hit"]
    assert a1.mean() >= AMORTISED_SHARE * ex.mean()
    assert (a1 >= PER_SEED_SHARE * ex).all()
    assert a2.mean() >= R2_SHARE * ex.mean()
    assert a1.mean() > rnd.mean()        # the same editor runs, chosen at random: worse
    assert a1.mean() > middle.mean() + 0.05   # and no network (the middle size everywhere): worse


@pytest.mark.slow
def test_exhaustive_well_above_random_and_anchors_on_objects(tables, model):
    for (size, seed), tabs in tables.items():
        r = T.evaluate_tables(tabs, model.network)
        print(size, seed, {k: round(v["hit"], 3) for k, v in r.items() if "hit" in v}, r["anchors"])
        assert r["exhaustive"]["hit"] >= r["random proposal"]["hit"] + EXHAUSTIVE_OVER_RANDOM, (size, seed)
        assert r["anchors"]["top1_on_object"] >= ANCHOR_ON_OBJECT, (size, seed)


@pytest.mark.slow
def test_real_runs_match_the_table(model):
    """learn_regions in exhaustive and amortised mode on two held-out tasks:
    the editor runs K·M and K·r times and picks the box the table predicts."""
    from livelayers.engine.regions import learn_regions
    dino, clip = T.load_toy_models()
    rng = np.random.default_rng(T.EVAL_SEEDS[1])
    for i in range(2):
        task = T.toy_task(rng, 64, 1 + i)
        tab = T.proposal_table(dino, clip, task)
        k, m = tab.loss.shape
        kw = dict(K=T.K_ANCHORS, box_sizes=T.BOX_SIZES, source_prompt=task.source_prompt)
        ex = learn_regions(dino, clip, T.toy_editor(task.prompt), task.image,
                           task.prompt, mode="exhaustive", **kw)
        assert ex.editor_runs == k * m
        assert torch.allclose(ex.box_losses, tab.loss, atol=1e-5)
        for r in (1, 2):
            am = learn_regions(dino, clip, T.toy_editor(task.prompt), task.image,
                               task.prompt, mode="amortised", proposals_per_anchor=r, region_model=model, **kw)
            assert am.editor_runs == k * r
            chosen = T.top_r(model.network(tab.roi, tab.text, tab.geometry), r)
            assert torch.equal(am.edited, chosen)
            masked = torch.where(chosen, tab.loss, torch.full_like(tab.loss, float("nan")))
            c = T.lowest_loss(masked)
            b = T.pick(tab.loss, tab.score, c, "score")
            assert am.box == tuple(int(v) for v in tab.boxes[b, c[b]].tolist())


def test_targets_prefer_the_smaller_of_equal_boxes():
    """soft_targets: softmax(-(L - min L + p_j) / tau), p_j rising to prefer_smaller at the largest box."""
    loss = torch.tensor([[1.0, 1.0, 1.2]])       # boxes small -> large; the first two tie
    got = T.soft_targets(loss, tau=0.05, prefer_smaller=0.15)
    want = torch.softmax(-torch.tensor([[0.0, 0.075, 0.35]]) / 0.05, dim=-1)
    assert torch.allclose(got, want) and got.argmax().item() == 0
    flat = T.soft_targets(loss, tau=0.05, prefer_smaller=0.0)   # no preference: the tie stays a tie
    assert torch.isclose(flat[0, 0], flat[0, 1]) and flat[0, 2] < flat[0, 0]
