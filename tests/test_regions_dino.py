"""DINO handle: forward shapes, position-embedding interpolation, load round
trips (native folder, original state dict, transformers layout), bad specs."""
from __future__ import annotations

import json

import pytest
import torch

from livelayers.engine.errors import CorruptFileError, InputError, ModelNotFoundError
from livelayers.engine.models.dino import (DINOHandle, ViT, ViTConfig, convert_hf_vit,
                                           interpolate_pos_embed, load_dino, save_dino)

TINY = ViTConfig(image_size=32, patch_size=8, width=32, depth=2, heads=2)


def _model(seed=0):
    torch.manual_seed(seed)
    m = ViT(TINY)
    for p in m.parameters():  # non-trivial weights everywhere (LayerNorms too)
        torch.nn.init.normal_(p, std=0.1) if p.ndim < 2 else None
    return m


def test_forward_shapes_and_attention_rows():
    h = DINOHandle(_model())
    out = h(torch.rand(2, 3, 32, 48))
    assert out.grid == (4, 6)
    assert out.features.shape == (2, 24, 32)
    assert out.cls.shape == (2, 32)
    assert out.attention.shape == (2, 2, 4, 6)
    assert out.feature_map().shape == (2, 32, 4, 6)
    # CLS attention over patches plus CLS-to-CLS sums to one per head
    tokens, attn, _ = h.model(h.normalise(torch.rand(1, 3, 32, 48)))
    assert torch.allclose(attn[:, :, 0].sum(-1), torch.ones(1, 2), atol=1e-5)


def test_attention_matches_manual_softmax():
    """The returned CLS map is the softmax of q·k of the last block (a
    reference computed independently from the weights)."""
    m = _model()
    x = torch.rand(1, 3, 32, 32)
    h = DINOHandle(m)
    out = h(x)
    with torch.no_grad():
        t = m.patch_embed(h.normalise(x)).flatten(2).transpose(1, 2)
        t = torch.cat([m.cls_token, t], 1) + m.pos_embed
        for blk in m.blocks[:-1]:
            t, _ = blk(t)
        last = m.blocks[-1]
        y = last.norm1(t)
        q, k, _ = last.attn.qkv(y).chunk(3, -1)
        q = q.view(1, -1, 2, 16).transpose(1, 2)
        k = k.view(1, -1, 2, 16).transpose(1, 2)
        ref = ((q @ k.transpose(-1, -2)) / 4.0).softmax(-1)[:, :, 0, 1:].reshape(1, 2, 4, 4)
    assert torch.allclose(out.attention, ref, atol=1e-5)


def test_pos_embed_interpolation():
    pe = torch.randn(1, 1 + 16, 8)
    same = interpolate_pos_embed(pe, 4, 4)
    assert same is pe
    big = interpolate_pos_embed(pe, 8, 6)
    assert big.shape == (1, 1 + 48, 8)
    assert torch.equal(big[:, 0], pe[:, 0])  # CLS entry untouched
    # a constant grid stays constant under bicubic resizing
    const = torch.cat([torch.zeros(1, 1, 8), torch.full((1, 16, 8), 0.7)], 1)
    assert torch.allclose(interpolate_pos_embed(const, 7, 5)[:, 1:], torch.tensor(0.7), atol=1e-5)
    with pytest.raises(CorruptFileError):
        interpolate_pos_embed(torch.randn(1, 1 + 15, 8), 4, 4)


def test_patch_multiple_required():
    h = DINOHandle(_model())
    with pytest.raises(InputError, match="multiples of the DINO patch size 8"):
        h(torch.rand(1, 3, 30, 32))


def test_native_round_trip(tmp_path):
    m = _model()
    save_dino(m, tmp_path / "d")
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    assert cfg["format"] == "livelayers-dino" and cfg["width"] == 32
    x = torch.rand(1, 3, 32, 32)
    a = DINOHandle(m)(x)
    for spec in (str(tmp_path / "d"), f"local-dir:{tmp_path / 'd'}"):
        b = load_dino(spec, device="cpu")(x)
        assert torch.allclose(a.features, b.features, atol=1e-6)
        assert torch.allclose(a.attention, b.attention, atol=1e-6)


def test_original_dino_state_dict(tmp_path):
    """An original DINO checkpoint (.pth, 'teacher' dict with 'backbone.'
    prefixes and a head) loads with its config inferred from the shapes."""
    cfg = ViTConfig(image_size=32, patch_size=8, width=64, depth=2, heads=1)
    torch.manual_seed(1)
    m = ViT(cfg)
    state = {f"backbone.{k}": v for k, v in m.state_dict().items()}
    state["head.last_layer.weight"] = torch.zeros(3, 64)
    torch.save({"teacher": state}, tmp_path / "dino.pth")
    h = load_dino(str(tmp_path / "dino.pth"), device="cpu")
    assert (h.patch_size, h.embed_dim, h.heads, h.image_size) == (8, 64, 1, 32)
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(h(x).features, DINOHandle(m)(x).features, atol=1e-6)


def _to_hf(model: ViT) -> dict:
    """Write a native model in transformers ViTModel key layout (test helper)."""
    s, out = model.state_dict(), {}
    out["embeddings.cls_token"] = s["cls_token"]
    out["embeddings.position_embeddings"] = s["pos_embed"]
    out["embeddings.patch_embeddings.projection.weight"] = s["patch_embed.proj.weight"]
    out["embeddings.patch_embeddings.projection.bias"] = s["patch_embed.proj.bias"]
    out["layernorm.weight"], out["layernorm.bias"] = s["norm.weight"], s["norm.bias"]
    for i in range(model.cfg.depth):
        b, L = f"blocks.{i}.", f"encoder.layer.{i}."
        for part in ("weight", "bias"):
            q, k, v = s[b + f"attn.qkv.{part}"].chunk(3, 0)
            out[L + f"attention.attention.query.{part}"] = q
            out[L + f"attention.attention.key.{part}"] = k
            out[L + f"attention.attention.value.{part}"] = v
            out[L + f"attention.output.dense.{part}"] = s[b + f"attn.proj.{part}"]
            out[L + f"layernorm_before.{part}"] = s[b + f"norm1.{part}"]
            out[L + f"layernorm_after.{part}"] = s[b + f"norm2.{part}"]
            out[L + f"intermediate.dense.{part}"] = s[b + f"mlp.fc1.{part}"]
            out[L + f"output.dense.{part}"] = s[b + f"mlp.fc2.{part}"]
    return out


def test_transformers_layout(tmp_path):
    from safetensors.torch import save_file
    m = _model(3)
    folder = tmp_path / "hf"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in _to_hf(m).items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "model_type": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
        "layer_norm_eps": 1e-6}))
    h = load_dino(str(folder), device="cpu")
    x = torch.rand(1, 3, 40, 32)
    assert torch.allclose(h(x).attention, DINOHandle(m)(x).attention, atol=1e-6)
    state, cfg = convert_hf_vit({f"vit.{k}": v for k, v in _to_hf(m).items()},
                                {"hidden_size": 32, "num_hidden_layers": 2, "patch_size": 8,
                                 "image_size": 32, "num_attention_heads": 2})
    assert cfg.mlp_ratio == 4.0 and set(state) == set(m.state_dict())


def test_bad_specs(tmp_path):
    with pytest.raises(InputError, match="LL_LoadDINO: input 'spec'"):
        load_dino("   ")
    with pytest.raises(ModelNotFoundError):
        load_dino(f"local-dir:{tmp_path / 'missing'}")
    with pytest.raises(ModelNotFoundError):
        load_dino(str(tmp_path / "nope" / "dino.pth"), offline=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorruptFileError, match="config.json"):
        load_dino(str(tmp_path / "empty"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptFileError):
        load_dino(str(tmp_path / "junk.pth"))


def test_toy_dino_asset_loads(assets):
    h = load_dino(f"local-dir:{assets / 'toy_dino'}", device="cpu")
    out = h(torch.rand(1, 3, 64, 64))
    assert out.attention.shape == (1, h.heads, 8, 8)
    assert torch.isfinite(out.features).all()


@pytest.mark.parametrize("size", [(32, 32), (40, 24)], ids=["native", "interpolated"])
def test_matches_transformers_vit_model(size):
    """Our ViT, loaded through convert_hf_vit, equals transformers' own
    ViTModel (random weights, eager attention): last hidden state and every
    block's attention, at the trained size and with interpolated positions."""
    from transformers import ViTConfig as HFConfig
    from transformers import ViTModel
    torch.manual_seed(5)
    hf_cfg = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=3,
                  num_attention_heads=4, intermediate_size=80, layer_norm_eps=1e-6,
                  hidden_act="gelu", qkv_bias=True)
    ref = ViTModel(HFConfig(**hf_cfg, attn_implementation="eager"), add_pooling_layer=False).eval()
    with torch.no_grad():
        for p in ref.parameters():  # LayerNorms and biases non-trivial too
            p.add_(torch.randn_like(p) * 0.2)
    state, cfg = convert_hf_vit(ref.state_dict(), {"model_type": "vit", **hf_cfg})
    ours = ViT(cfg).eval()
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        want = ref(pixel_values=x, output_attentions=True, interpolate_pos_encoding=size != (32, 32))
        p = ours.patch_embed(x)
        t = torch.cat([ours.cls_token.expand(2, -1, -1), p.flatten(2).transpose(1, 2)], 1)
        t = t + interpolate_pos_embed(ours.pos_embed, *p.shape[-2:])
        attentions = []
        for blk in ours.blocks:
            t, a = blk(t)
            attentions.append(a)
        tokens, last, grid = ours(x)
    assert grid == (size[0] // 8, size[1] // 8)
    assert torch.allclose(tokens, want.last_hidden_state, atol=1e-5)
    assert torch.allclose(last, want.attentions[-1], atol=1e-5)
    assert len(want.attentions) == len(attentions) == 3
    for a, b in zip(attentions, want.attentions):
        assert torch.allclose(a, b, atol=1e-5)
