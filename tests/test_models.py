"""The CLIP handle: spec forms, the manual ViT pass, preprocessing, gradients, text cache."""
from __future__ import annotations

import json

import pytest
import torch

from livelayers.engine.errors import InputError, ModelNotFoundError
from livelayers.engine.models.clip import CLIPHandle, handle_from_model, load_clip

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
# every feature of open_clip's own ``Attention`` class except scaled cosine
# attention, whose open_clip 3.3 forward fails on 4-D tensors (bmm) by itself
CUSTOM_CFG = {**TINY_CFG, "vision_cfg": {**TINY_CFG["vision_cfg"], "qk_norm": True, "scale_heads": True,
                                         "scale_attn_inner": True, "scale_attn": True, "scale_fc": True}}
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def _tiny_model(cfg=TINY_CFG, seed=0):
    import open_clip
    torch.manual_seed(seed)
    return open_clip.CLIP(**cfg)


def save_local_dir(model, cfg, folder):
    """Write an open_clip local-dir: open_clip_config.json + fp16 safetensors."""
    from safetensors.torch import save_file
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().contiguous() for k, v in model.state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": cfg, "preprocess_cfg": {"mean": list(MEAN), "std": list(STD),
                                             "interpolation": "bicubic", "resize_mode": "shortest"}}))
    return folder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_local_dir(_tiny_model(), TINY_CFG, tmp_path_factory.mktemp("clip") / "tiny")


# ------------------------------------------------------------------ spec forms

def test_local_dir_and_plain_folder_load_the_same_weights(tiny_dir):
    a = load_clip(f"local-dir:{tiny_dir}", device="cpu")
    b = load_clip(str(tiny_dir), device="cpu")
    assert a.image_size == 32 and a.patch_size == 8 and a.grid == 4 and a.n_blocks == 2
    assert a.embed_dim == 32 and a.heads == 4
    # the fp16 file is upcast: weights are fp32 and equal to the rounded originals
    ref = _tiny_model().visual.conv1.weight.half().float()
    assert a.model.visual.conv1.weight.dtype == torch.float32
    assert torch.equal(a.model.visual.conv1.weight, ref)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(a.encode_image(x), b.encode_image(x), atol=1e-6)
    assert all(not p.requires_grad for p in a.model.parameters())


def test_search_dirs_find_a_folder_by_name(tiny_dir, monkeypatch):
    monkeypatch.delenv("LIVELAYERS_MODELS", raising=False)
    # a plain name is looked up in the extra (ComfyUI) folders
    h = load_clip("tiny", device="cpu", search_dirs=[str(tiny_dir.parent)])
    assert h.source == str(tiny_dir)


def test_name_and_weights_file_pair(tiny_dir, tmp_path):
    """(open_clip name, weights file) loads through create_model(name, pretrained=file)."""
    import open_clip
    from livelayers.engine.models import resolve
    r = resolve.resolve_clip(("ViT-B-32", str(tiny_dir / "open_clip_model.safetensors")))
    assert (r.name, r.source) == ("ViT-B-32", "explicit") and r.pretrained.endswith(".safetensors")
    assert "ViT-B-32" in open_clip.list_models()


def test_bad_specs_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="ViT-B-32/openai"):
        load_clip("ViT-B-32", device="cpu")        # an architecture without weights
    with pytest.raises(ValueError, match="allowed"):
        load_clip("ViT-B-32/no-such-tag", device="cpu")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_clip(f"local-dir:{tmp_path / 'nope'}", device="cpu")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="open_clip_config.json"):
        load_clip(str(tmp_path / "empty"), device="cpu")


def test_offline_name_tag_says_what_to_fetch(monkeypatch, tmp_path):
    monkeypatch.setenv("LIVELAYERS_MODELS", str(tmp_path))
    from livelayers.engine.models import resolve
    with pytest.raises(ModelNotFoundError) as e:
        resolve.resolve_clip("ViT-B-32/openai", offline=True, hf_cache_dir=str(tmp_path / "hf"))
    msg = str(e.value)
    assert "python -m livelayers models fetch openai-vit-b-32" in msg
    assert str(tmp_path / "clip" / "openai-vit-b-32") in msg


def test_node_rejects_bad_spec_and_loads_a_folder(tiny_dir):
    from livelayers.nodes.model_nodes import LL_LoadCLIP
    node = LL_LoadCLIP()
    with pytest.raises(InputError, match="LL_LoadCLIP: input 'model'"):
        node.load("ViT-B-32", "cpu", "fp32")
    with pytest.raises(InputError, match="is empty"):
        node.load("  ", "cpu", "fp32")
    (handle,) = node.load(str(tiny_dir), "cpu", "fp32")
    assert isinstance(handle, CLIPHandle)
    spec = LL_LoadCLIP.INPUT_TYPES()["required"]
    assert all("tooltip" in opts for _, opts in spec.values())
    assert spec["model"][1]["default"] == "toy-clip"


# --------------------------------------------------------- manual ViT forward

@pytest.mark.parametrize("cfg", [TINY_CFG, CUSTOM_CFG], ids=["MultiheadAttention", "open_clip.Attention"])
def test_image_forward_matches_encode_image_on_both_attention_classes(cfg):
    model = _tiny_model(cfg)
    kind = type(model.visual.transformer.resblocks[0].attn).__name__
    assert kind == ("MultiheadAttention" if cfg is TINY_CFG else "Attention")
    h = handle_from_model(model)
    x = torch.rand(3, 3, 40, 56)  # not square, not the model size: preprocess is exercised
    with torch.no_grad():
        ref = h.encode_image(x)
        out = h.image_forward(x, tokens_from=(0, -1), attention_from=(0, 1))
    assert (out.embedding - ref).abs().max() < 1e-5
    assert set(out.tokens) == {0, 1} and set(out.attention) == {0, 1}
    assert out.tokens[1].shape == (3, 17, 64)
    assert out.attention[0].shape == (3, 4, 17, 17)
    assert torch.allclose(out.attention[0].sum(-1), torch.ones(3, 4, 17), atol=1e-5)
    # tokens of the last block are what open_clip's own blocks produce
    v = model.visual
    with torch.no_grad():
        t = v.transformer(v._embeds(h.preprocess(x)))
    assert (out.tokens[1] - t).abs().max() < 1e-5


def test_image_forward_on_toy_clip(toy_clip):
    h = toy_clip
    assert (h.image_size, h.patch_size, h.grid, h.n_blocks, h.embed_dim) == (64, 8, 8, 4, 128)
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        ref = h.encode_image(x)
        out = h.image_forward(x, tokens_from=(2,), attention_from=(3,))
    assert (out.embedding - ref).abs().max() < 1e-5
    assert out.tokens[2].shape == (2, 65, 128)
    assert out.attention[3].shape == (2, h.heads, 65, 65)
    assert 1 < h.logit_scale <= 100


@pytest.mark.slow
def test_image_forward_matches_encode_image_on_random_vit_b_32():
    import open_clip
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)  # random weights, no download
    h = handle_from_model(model)
    assert (h.image_size, h.grid, h.n_blocks, h.heads, h.embed_dim) == (224, 7, 12, 12, 512)
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        ref = h.encode_image(x)
        out = h.image_forward(x, attention_from=(11,))
    assert (out.embedding - ref).abs().max() < 1e-5
    assert out.attention[11].shape == (1, 12, 50, 50)


# ---------------------------------------------------------- preprocessing, grads

def test_preprocess_normalises_and_crops_or_squashes():
    h = handle_from_model(_tiny_model())
    flat = torch.full((1, 3, 48, 64), 0.5)
    p = h.preprocess(flat)
    assert p.shape == (1, 3, 32, 32)
    want = (0.5 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(p[0, :, 5, 5], want, atol=1e-5)
    # a 32x64 frame whose left quarter is white: the centre crop drops it, squash keeps it
    x = torch.zeros(1, 3, 32, 64)
    x[..., :16] = 1.0
    white = (1.0 - MEAN[0]) / STD[0]
    crop = h.preprocess(x, mode="shortest")
    squash = h.preprocess(x, mode="squash")
    assert crop[0, 0].max() < white - 1.0           # no white left in the crop
    assert squash[0, 0, :, :6].min() > white - 0.1  # left columns are white
    with pytest.raises(ValueError, match="allowed"):
        h.preprocess(x, mode="pad")


@pytest.mark.parametrize("mode", ["shortest", "squash"])
def test_gradients_reach_the_input_image(mode):
    h = handle_from_model(_tiny_model())
    x = torch.rand(2, 3, 40, 50, requires_grad=True)
    t = h.encode_text(["a red circle"])
    (h.encode_image(x, mode=mode) @ t.T).sum().backward()
    g = x.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    # the attention maps are in the graph too
    x2 = torch.rand(1, 3, 32, 32, requires_grad=True)
    out = h.image_forward(x2, attention_from=(0,))
    (g2,) = torch.autograd.grad(out.attention[0][0, :, 0, 1:].sum(), x2)
    assert g2.abs().sum() > 0


def test_text_cache_hits_and_returns_the_same_embedding(monkeypatch):
    h = handle_from_model(_tiny_model())
    calls = []
    real = h.model.encode_text
    monkeypatch.setattr(h.model, "encode_text", lambda t, **kw: calls.append(len(t)) or real(t, **kw))
    a = h.encode_text(["a red circle", "a blue star"])
    assert calls == [2] and a.shape == (2, 32)
    assert torch.allclose(a.norm(dim=-1), torch.ones(2), atol=1e-5)
    b = h.encode_text(["a blue star", "a red circle", "a green square"])
    assert calls == [2, 1]                       # only the new string was encoded
    assert h.text_cache_hits == 2
    assert torch.equal(b[0], a[1]) and torch.equal(b[1], a[0])
    assert not b.requires_grad


def test_catalogue_id_loads_the_shipped_toy_clip(toy_clip_dir, monkeypatch):
    monkeypatch.delenv("LIVELAYERS_MODELS", raising=False)
    from livelayers.nodes.model_nodes import LL_LoadCLIP
    (h,) = LL_LoadCLIP().load("toy-clip", "cpu", "auto")
    assert h.source == str(toy_clip_dir.resolve()) and h.autocast is None  # fp32 on the CPU
    assert h.image_size == 64


def test_hf_hub_spec_loads_from_the_hugging_face_cache(tiny_dir, tmp_path, monkeypatch):
    """hf-hub:org/repo offline: found as a snapshot in the HF cache and loaded."""
    monkeypatch.delenv("LIVELAYERS_MODELS", raising=False)
    snap = tmp_path / "hf" / "models--someorg--tiny" / "snapshots" / ("ab" * 20)
    snap.mkdir(parents=True)
    for f in tiny_dir.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (tmp_path / "hf" / "models--someorg--tiny" / "refs").mkdir()
    (tmp_path / "hf" / "models--someorg--tiny" / "refs" / "main").write_text("ab" * 20)
    h = load_clip("hf-hub:someorg/tiny", device="cpu", offline=True, hf_cache_dir=str(tmp_path / "hf"))
    ref = load_clip(str(tiny_dir), device="cpu")
    assert h.source == str(snap) and h.n_blocks == 2
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(h.encode_image(x), ref.encode_image(x))
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download someorg/other"):
        load_clip("hf-hub:someorg/other", device="cpu", offline=True, hf_cache_dir=str(tmp_path / "hf"))
