"""MineCLIP `attn`: original checkpoint layout, strict loading, reference semantics, fast embeddings."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import os

import pytest
import torch
import torch.nn.functional as F

from mineclip_model import mineclip as mineclip_module
from mineclip_model.embedding import (
    check_mineclip_frames,
    embed_clip,
    embed_frames_sliding,
    embed_text,
    encode_frames_batched,
    resize_frames_for_mineclip,
)
from mineclip_model.image_encoder import MINECLIP_IMAGE_MEAN, MINECLIP_IMAGE_STD
from mineclip_model.mineclip import (
    MineCLIP,
    MineCLIPConfig,
    load_mineclip,
    original_state_dict,
    save_mineclip,
)
from mineclip_model.tokenizer import tokenize
from toolkit_utils.file_hashes import file_md5

REFERENCE_KEYS = Path(__file__).parent / "data" / "mineclip_attn_state_dict_keys.txt"
TINY = MineCLIPConfig.tiny()


def randomize_(module: torch.nn.Module, scale: float = 0.05, seed: int = 1) -> None:
    """Perturb every parameter so that no bias is 0 and no LayerNorm weight is 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


@pytest.fixture
def tiny_model() -> MineCLIP:
    torch.manual_seed(0)
    model = MineCLIP(TINY).eval()
    randomize_(model)
    return model


def random_frames(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*shape, 160, 256, 3), dtype=np.uint8)


def save_raw(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save({"state_dict": state}, path)
    return path


# ---------------------------------------------------------------- checkpoint layout


@pytest.mark.slow
def test_full_config_saved_layout_equals_reference_key_list(tmp_path):
    """All 788 keys, in the original order, with the original shapes; and the file loads back strictly."""
    reference = REFERENCE_KEYS.read_text().splitlines()
    assert len(reference) == 788
    model = MineCLIP(MineCLIPConfig.attn())
    path = tmp_path / "attn.pth"
    save_mineclip(model, path)
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert [f"{k}\t{tuple(v.shape)}" for k, v in state.items()] == reference
    loaded = load_mineclip(path)
    assert torch.equal(loaded.image_encoder.pos_embed, model.image_encoder.pos_embed)
    assert torch.equal(loaded.clip_model.text_model.token_embedding.weight, model.clip_model.text_model.token_embedding.weight)


def test_saved_aliases_share_storage(tmp_path, tiny_model):
    path = save_mineclip_tmp(tiny_model, tmp_path)
    state = torch.load(path, weights_only=True)["state_dict"]
    a = state["model.image_encoder.conv1.weight"]
    for alias in ("model.clip_model.vision_model.conv1.weight", "model.reward_head.clip_model.vision_model.conv1.weight"):
        assert state[alias].untyped_storage().data_ptr() == a.untyped_storage().data_ptr()
    assert torch.equal(state["model.reward_head.clip_model.logit_scale"], state["model.clip_model.logit_scale"])


def save_mineclip_tmp(model: MineCLIP, tmp_path: Path) -> Path:
    path = tmp_path / "mineclip.pth"
    save_mineclip(model, path)
    return path


def test_save_load_round_trip_gives_identical_outputs(tmp_path, tiny_model):
    loaded = load_mineclip(save_mineclip_tmp(tiny_model, tmp_path), config=TINY)
    assert not loaded.training
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    clips = torch.from_numpy(random_frames(2, 16))
    tokens = tokenize(["chop a tree", "go fishing"])
    with torch.no_grad():
        assert torch.equal(loaded.encode_frames(clips[0]), tiny_model.encode_frames(clips[0]))
        assert torch.equal(loaded.encode_video(clips), tiny_model.encode_video(clips))
        assert torch.equal(loaded.encode_text(tokens), tiny_model.encode_text(tokens))
        video = tiny_model.encode_video(clips)
        assert torch.equal(loaded.forward_reward_head(video, tokens)[0], tiny_model.forward_reward_head(video, tokens)[0])


@pytest.mark.parametrize(
    "edit, expected",
    [
        ("alias", "model.clip_model.vision_model.blocks.1.ln_2.bias"),
        ("missing", "temporal_encoder.attn.model.norm.bias"),
        ("unexpected", "clip_model.text_model.extra_table"),
        ("no_prefix", "optimizer_state"),
        ("shape", "reward_head.video_adapter.0.weight: file (3, 3)"),
    ],
)
def test_bad_checkpoints_are_refused_naming_the_key(tmp_path, tiny_model, edit, expected):
    state = {k: v.clone() for k, v in original_state_dict(tiny_model).items()}
    if edit == "alias":
        state["model.clip_model.vision_model.blocks.1.ln_2.bias"] += 1e-3
    elif edit == "missing":
        del state["model.temporal_encoder.attn.model.norm.bias"]
    elif edit == "unexpected":
        state["model.clip_model.text_model.extra_table"] = torch.zeros(2)
    elif edit == "no_prefix":
        state["optimizer_state"] = torch.zeros(1)
    elif edit == "shape":
        state["model.reward_head.video_adapter.0.weight"] = torch.zeros(3, 3)
    path = save_raw(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_mineclip(path, config=TINY)


def test_all_name_problems_reported_together(tmp_path, tiny_model):
    state = dict(original_state_dict(tiny_model))
    del state["model.image_encoder.ln_post.weight"]
    state["model.bogus"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        load_mineclip(save_raw(state, tmp_path / "bad.pth"), config=TINY)
    assert "image_encoder.ln_post.weight" in str(err.value) and "bogus" in str(err.value)


def test_md5_is_checked_only_when_asked(tmp_path, tiny_model, monkeypatch):
    path = save_mineclip_tmp(tiny_model, tmp_path)
    load_mineclip(path, config=TINY)  # check_md5=False by default
    with pytest.raises(ValueError, match="md5"):
        load_mineclip(path, config=TINY, check_md5=True)
    monkeypatch.setattr(mineclip_module, "ATTN_PTH_MD5", file_md5(path))
    load_mineclip(path, config=TINY, check_md5=True)


class TrainingConfig:
    """Stands for metadata a real checkpoint may pickle beside its tensors (e.g. a training config)."""

    def __init__(self) -> None:
        self.lr = 1e-4


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_checkpoint_metadata_objects_are_tolerated_but_code_is_refused(tmp_path, tiny_model, capfd):
    path = tmp_path / "with_config.pth"
    torch.save({"state_dict": original_state_dict(tiny_model), "hyper_parameters": TrainingConfig()}, path)
    loaded = load_mineclip(path, config=TINY)  # the foreign class becomes an inert stand-in
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), tiny_model.state_dict().values()))
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": original_state_dict(tiny_model), "extra": RunsCode()}, evil)
    with pytest.raises(ValueError, match="refused"):
        load_mineclip(evil, config=TINY)
    assert "must never run" not in capfd.readouterr().out


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="STEVE-1 README"):
        load_mineclip(tmp_path / "attn.pth")


# ---------------------------------------------------------------- reference semantics
# Straightforward re-statements of the original architecture with stock PyTorch modules
# (explicit normalisation + conv, nn.MultiheadAttention, explicit QuickGELU / softmax), so the
# fast path's tricks (folded normalisation, patch matmul, epilogue scaling, SDPA) are checked.


def reference_clip_block(block, x: torch.Tensor, causal: bool) -> torch.Tensor:
    width = x.shape[-1]
    mha = torch.nn.MultiheadAttention(width, block.attn.heads, batch_first=True)
    mha.load_state_dict(block.attn.state_dict())
    mask = torch.full((x.shape[1], x.shape[1]), float("-inf")).triu(1) if causal else None
    h = F.layer_norm(x, (width,), block.ln_1.weight, block.ln_1.bias)
    x = x + mha(h, h, h, need_weights=False, attn_mask=mask)[0]
    h = F.linear(F.layer_norm(x, (width,), block.ln_2.weight, block.ln_2.bias), block.mlp.c_fc.weight, block.mlp.c_fc.bias)
    return x + F.linear(h * torch.sigmoid(1.702 * h), block.mlp.c_proj.weight, block.mlp.c_proj.bias)


def reference_image_features(enc, frames: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(MINECLIP_IMAGE_MEAN).view(1, 3, 1, 1)) / torch.tensor(MINECLIP_IMAGE_STD).view(1, 3, 1, 1)
    x = F.conv2d(x, enc.conv1.weight, stride=enc.conv1.stride).flatten(2).transpose(1, 2)
    x = torch.cat([enc.cls_token.expand(len(x), 1, -1), x], dim=1) + enc.pos_embed
    x = F.layer_norm(x, x.shape[-1:], enc.ln_pre.weight, enc.ln_pre.bias)
    for block in enc.blocks:
        x = reference_clip_block(block, x, causal=False)
    return F.layer_norm(x[:, 0], x.shape[-1:], enc.ln_post.weight, enc.ln_post.bias) @ enc.projection


def reference_video_features(temporal, feats: torch.Tensor) -> torch.Tensor:
    model = temporal.attn.model
    dim = feats.shape[-1]
    x = feats + model.pos_emb.emb.weight[: feats.shape[1]] / math.sqrt(dim)
    for norms, branch in model.attn_layers.layers:
        h = norms[0](x)
        if hasattr(branch, "to_q"):
            heads = branch.heads
            q, k, v = (t(h).unflatten(-1, (heads, -1)).transpose(1, 2) for t in (branch.to_q, branch.to_k, branch.to_v))
            attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
            x = x + branch.to_out((attn @ v).transpose(1, 2).flatten(2))
        else:
            value, gate = branch.net[0].proj(h).chunk(2, dim=-1)  # first half value, second half gate
            x = x + branch.net[3](value * F.silu(gate))
    return model.norm(x).mean(dim=1)


def reference_text_features(text_model, tokens: torch.Tensor) -> torch.Tensor:
    x = text_model.token_embedding(tokens) + text_model.pos_embed
    for block in text_model.blocks:
        x = reference_clip_block(block, x, causal=True)
    x = F.layer_norm(x, x.shape[-1:], text_model.ln_final.weight, text_model.ln_final.bias)
    return x[torch.arange(len(x)), tokens.argmax(-1)] @ text_model.projection


@torch.no_grad()
def test_image_encoder_matches_reference_vit(tiny_model):
    frames = random_frames(5)
    ours = tiny_model.encode_frames(torch.from_numpy(frames))
    assert torch.allclose(ours, reference_image_features(tiny_model.image_encoder, frames), atol=2e-5, rtol=0)
    # float input with 0-255 values gives the same features as uint8
    assert torch.allclose(tiny_model.encode_frames(torch.from_numpy(frames).float()), ours, atol=1e-6, rtol=0)


@torch.no_grad()
def test_temporal_encoder_matches_reference(tiny_model):
    feats = torch.randn(3, 16, TINY.embed_dim)
    assert torch.allclose(tiny_model.encode_video_features(feats), reference_video_features(tiny_model.temporal_encoder, feats), atol=1e-5, rtol=0)


@torch.no_grad()
def test_text_encoder_matches_reference_and_ignores_padding(tiny_model):
    tokens = tokenize(["chop a tree", "find a cave and go inside it"])
    ours = tiny_model.encode_text(tokens)
    assert torch.allclose(ours, reference_text_features(tiny_model.clip_model.text_model, tokens), atol=2e-5, rtol=0)
    # causal: tokens after the end-of-text token do not change the feature
    altered = tokens.clone()
    altered[0, 10:] = 1234
    altered[0, altered[0].argmax()] = 49407
    assert torch.allclose(tiny_model.encode_text(altered)[0], ours[0], atol=1e-6, rtol=0)


@torch.no_grad()
def test_reward_head_follows_mineclip_formula(tiny_model):
    video = torch.randn(3, TINY.embed_dim)
    tokens = tokenize(["a", "b c"])
    head = tiny_model.reward_head
    res = torch.sigmoid(head.video_residual_weight)
    mlp = head.video_adapter[3](torch.relu(head.video_adapter[0](video)))
    adapted = F.normalize(res * video + (1 - res) * mlp, dim=-1)
    text = F.normalize(tiny_model.encode_text(tokens), dim=-1)
    expected = tiny_model.clip_model.logit_scale.exp() * adapted @ text.t()
    per_video, per_text = tiny_model.forward_reward_head(video, tokens)
    assert torch.allclose(per_video, expected, atol=1e-5) and torch.equal(per_text, per_video.t())
    assert torch.equal(tiny_model.forward_reward_head(video, tiny_model.encode_text(tokens))[0], per_video)


def test_configs():
    attn = MineCLIPConfig.attn()
    assert (attn.vision_width, attn.vision_layers, attn.vision_heads, attn.patch_size) == (768, 12, 12, 16)
    assert (attn.embed_dim, attn.temporal_depth, attn.temporal_heads, attn.temporal_dim_head) == (512, 2, 8, 64)
    assert (attn.text_width, attn.text_layers, attn.text_heads, attn.context_length, attn.vocab_size) == (512, 12, 8, 77, 49408)
    assert sum(p.numel() for p in MineCLIP(TINY).parameters()) < 3_000_000


# ---------------------------------------------------------------- fast embeddings


@pytest.mark.parametrize("batch_size", [7, 16, 64])
def test_sliding_embedding_equals_each_window_separately(tiny_model, batch_size):
    frames = random_frames(40, seed=3)
    out = embed_frames_sliding(tiny_model, frames, batch_size=batch_size, progress=False)
    assert out.shape == (40, TINY.embed_dim) and out.dtype == np.float32
    assert np.isnan(out[:15]).all() and not np.isnan(out[15:]).any()
    windows = torch.from_numpy(np.stack([frames[i - 15 : i + 1] for i in range(15, 40)]))
    with torch.no_grad():
        expected = tiny_model.encode_video(windows).numpy()
    assert np.abs(out[15:] - expected).max() <= 1e-5


def test_sliding_embedding_of_short_video_is_all_nan(tiny_model):
    out = embed_frames_sliding(tiny_model, random_frames(15), progress=False)
    assert out.shape == (15, TINY.embed_dim) and np.isnan(out).all()


def test_sliding_embedding_accepts_strided_and_read_only_frames(tiny_model):
    frames = random_frames(40, seed=4)
    expected = embed_frames_sliding(tiny_model, np.ascontiguousarray(frames[::2]), batch_size=8, progress=False)
    read_only = frames.copy()
    read_only.setflags(write=False)
    got = embed_frames_sliding(tiny_model, read_only[::2], batch_size=8, progress=False)
    np.testing.assert_array_equal(got, expected)


def test_frame_features_are_computed_once_per_frame(tiny_model, monkeypatch):
    calls = []
    original = tiny_model.image_encoder.forward
    monkeypatch.setattr(tiny_model.image_encoder, "forward", lambda x: calls.append(len(x)) or original(x))
    embed_frames_sliding(tiny_model, random_frames(50), batch_size=16, progress=False)
    assert calls == [16, 16, 16, 2]


def test_bf16_autocast_path_is_close_to_fp32(tiny_model):
    frames = random_frames(24, seed=5)
    fp32 = embed_frames_sliding(tiny_model, frames, progress=False)
    bf16 = embed_frames_sliding(tiny_model, frames, progress=False, dtype="bf16")
    assert np.linalg.norm(bf16[15:] - fp32[15:]) / np.linalg.norm(fp32[15:]) < 3e-2


def test_embed_clip_and_text(tiny_model):
    frames = random_frames(16, seed=6)
    with torch.no_grad():
        expected = tiny_model.encode_video(torch.from_numpy(frames)[None])[0].numpy()
        text_expected = tiny_model.encode_text(tokenize(["mine a block of dirt", "swim"])).numpy()
    assert np.abs(embed_clip(tiny_model, frames) - expected).max() <= 1e-5
    np.testing.assert_allclose(embed_text(tiny_model, ["mine a block of dirt", "swim"]), text_expected, atol=1e-6)
    with pytest.raises(ValueError, match="exactly 16 frames"):
        embed_clip(tiny_model, random_frames(17))


def test_encode_frames_batched_matches_encode_frames(tiny_model):
    frames = random_frames(10, seed=7)
    feats = encode_frames_batched(tiny_model, frames, batch_size=3, progress=False)
    with torch.no_grad():
        assert torch.allclose(feats, tiny_model.encode_frames(torch.from_numpy(frames)), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "frames, error, message",
    [
        (np.zeros((4, 128, 128, 3), np.uint8), ValueError, "resize_frames_for_mineclip"),
        (np.zeros((4, 3, 160, 256), np.uint8), ValueError, "channels-first"),
        (np.zeros((4, 256, 160, 3), np.uint8), ValueError, "swapped"),
        (np.zeros((160, 256, 3), np.uint8), ValueError, "one frame"),
        (np.zeros((4, 160, 256, 3), np.float32), TypeError, "uint8"),
        (np.zeros((4, 160, 256, 4), np.uint8), ValueError, r"\[N, 160, 256, 3\]"),
        ([np.zeros((160, 256, 3), np.uint8)], TypeError, "numpy array"),
    ],
)
def test_bad_frames_are_refused(tiny_model, frames, error, message):
    with pytest.raises(error, match=message):
        check_mineclip_frames(frames)
    with pytest.raises(error, match=message):
        embed_frames_sliding(tiny_model, frames, progress=False)


def test_model_refuses_channels_first_tensors(tiny_model):
    with pytest.raises(ValueError, match="channels-first"):
        tiny_model.encode_frames(torch.zeros(2, 3, 160, 256, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"clips must be \[B, 16"):
        tiny_model.encode_video(torch.zeros(2, 8, 160, 256, 3, dtype=torch.uint8))


def test_resize_frames_for_mineclip_uses_inter_linear():
    frames = np.random.default_rng(8).integers(0, 256, size=(2, 360, 640, 3), dtype=np.uint8)
    out = resize_frames_for_mineclip(frames)
    assert out.shape == (2, 160, 256, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1], cv2.resize(frames[1], (256, 160), interpolation=cv2.INTER_LINEAR))
    assert resize_frames_for_mineclip(frames[0]).shape == (160, 256, 3)
    already = random_frames(2)
    assert resize_frames_for_mineclip(already) is already
