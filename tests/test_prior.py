"""The STEVE-1 prior: original state-dict layout, sampling, checkpoints, and the training entrypoint."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from prior_model.prior import GoalPrior, PriorConfig, load_prior, save_prior
from toolkit_utils.state_dicts import StateDictMismatchError
from prior_model.prior_dataset import load_npz_pairs, save_npz_pairs, split_indices, PriorPairs
from prior_model.train_prior import build_parser, main

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = PriorConfig(embed_dim=8, hidden_dim=16, latent_dim=4)

# Keys and shapes of the released steve1_prior.pt (TranslatorVAE with mineclip/hidden/latent dims 512).
ORIGINAL_PRIOR_SHAPES = {
    "encoder.0.weight": (512, 1024), "encoder.0.bias": (512,),
    "encoder.1.weight": (512,), "encoder.1.bias": (512,),
    "encoder.3.weight": (512, 512), "encoder.3.bias": (512,),
    "encoder.4.weight": (512,), "encoder.4.bias": (512,),
    "encoder.6.weight": (1024, 512), "encoder.6.bias": (1024,),
    "decoder.0.weight": (512, 1024), "decoder.0.bias": (512,),
    "decoder.1.weight": (512,), "decoder.1.bias": (512,),
    "decoder.3.weight": (512, 512), "decoder.3.bias": (512,),
    "decoder.4.weight": (512,), "decoder.4.bias": (512,),
    "decoder.6.weight": (512, 512), "decoder.6.bias": (512,),
}


def test_state_dict_matches_original_layout():
    shapes = {k: tuple(v.shape) for k, v in GoalPrior().state_dict().items()}
    assert shapes == ORIGINAL_PRIOR_SHAPES


def test_encoder_output_splits_mean_then_logvar():
    model = GoalPrior(TINY)
    with torch.no_grad():
        model.encoder[6].weight.zero_()
        model.encoder[6].bias.copy_(torch.cat([torch.full((4,), 1.0), torch.full((4,), 2.0)]))
    mean, logvar = model.encode(torch.randn(3, 8), torch.randn(3, 8))
    assert torch.all(mean == 1.0) and torch.all(logvar == 2.0)


def test_decoder_input_is_z_then_text():
    model = GoalPrior(TINY)
    with torch.no_grad():
        model.decoder[0].weight[:, 4:].zero_()  # columns that read the text: the output must then ignore it
    z = torch.randn(2, 4)
    out_a = model.decode(z, torch.randn(2, 8))
    out_b = model.decode(z, torch.randn(2, 8))
    assert torch.allclose(out_a, out_b)


def test_deterministic_sample_is_repeatable_and_uses_zero_latent():
    model = GoalPrior(TINY).eval()
    text = torch.randn(5, 8)
    a = model.sample(text, deterministic=True)
    b = model.sample(text, deterministic=True)
    assert torch.equal(a, b)
    assert torch.allclose(a, model.decode(torch.zeros(5, 4), text))
    assert torch.equal(model(text, deterministic=True), a)  # the original's call convention


def test_stochastic_sample_varies_and_follows_generator():
    model = GoalPrior(TINY).eval()
    text = torch.randn(5, 8)
    a, b = model.sample(text), model.sample(text)
    assert not torch.allclose(a, b)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(model.sample(text, generator=g1), model.sample(text, generator=g2))


def test_loss_sums_kl_over_batch_and_averages_mse():
    model = GoalPrior(TINY)
    visual, text = torch.randn(6, 8), torch.randn(6, 8)
    total, recon, kl = model.loss(visual, text, beta=0.5)
    mean, logvar = model.encode(visual, text)
    expected_kl = -0.5 * torch.sum(1 + logvar - mean.pow(2) - logvar.exp())
    assert torch.allclose(kl, expected_kl)
    _, _, kl_twice = model.loss(torch.cat([visual, visual]), torch.cat([text, text]))
    assert torch.allclose(kl_twice, 2 * kl)  # summed, not averaged, over the batch
    assert torch.allclose(total, 0.5 * kl + recon)


def test_save_load_round_trip(tmp_path):
    model = GoalPrior(TINY).eval()
    path = save_prior(model, tmp_path / "sub" / "prior.pt")
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw, dict) and set(raw) == set(model.state_dict())  # plain state dict, like steve1_prior.pt
    loaded = load_prior(path)
    assert loaded.config == TINY
    text = torch.randn(3, 8)
    assert torch.equal(loaded.sample(text, deterministic=True), model.sample(text, deterministic=True))
    assert not list(tmp_path.joinpath("sub").glob("*.tmp"))


def test_loads_a_plain_torch_save_of_the_real_size(tmp_path):
    path = tmp_path / "steve1_prior.pt"
    torch.save(GoalPrior().state_dict(), path)  # how the original train_vae.py wrote it
    assert load_prior(path).config == PriorConfig(512, 512, 512)


def test_wrong_shape_is_named(tmp_path):
    state = GoalPrior(TINY).state_dict()
    state["decoder.6.weight"] = torch.zeros(7, 16)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(StateDictMismatchError, match=r"shape mismatches \(1\): decoder\.6\.weight: file \(7, 16\)"):
        load_prior(tmp_path / "bad.pt")


def test_missing_and_unexpected_keys_are_named_in_one_error(tmp_path):
    state = GoalPrior(TINY).state_dict()
    del state["encoder.3.bias"]
    state["head.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(StateDictMismatchError) as info:
        load_prior(tmp_path / "bad.pt")
    assert "missing keys (1): encoder.3.bias" in str(info.value)
    assert "unexpected keys (1): head.extra" in str(info.value)


def test_split_is_deterministic_and_disjoint():
    train_a, val_a = split_indices(100, 20, seed=3)
    train_b, val_b = split_indices(100, 20, seed=3)
    _, val_c = split_indices(100, 20, seed=4)
    assert np.array_equal(val_a, val_b) and np.array_equal(train_a, train_b)
    assert not np.array_equal(val_a, val_c)
    assert len(val_a) == 20 and sorted(np.concatenate([train_a, val_a]).tolist()) == list(range(100))


def _toy_pairs(n: int = 400, dim: int = 8, seed: int = 0) -> PriorPairs:
    """visual = fixed linear map of text + small noise: learnable, so validation loss must fall."""
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((n, dim)).astype(np.float32)
    mapping = rng.standard_normal((dim, dim)).astype(np.float32) / np.sqrt(dim)
    visual = (text @ mapping + 0.05 * rng.standard_normal((n, dim))).astype(np.float32)
    return PriorPairs(text, visual, np.array([f"text {i}" for i in range(n)]))


def _train_argv(tmp_path: Path, data_path: Path, *extra: str) -> list[str]:
    return [
        "--data_path", str(data_path), "--output_path", str(tmp_path / "out" / "prior.pt"),
        "--log_dir", str(tmp_path / "logs"), "--hidden_dim", "32", "--latent_dim", "4", "--batch_size", "32",
        "--lr", "3e-3", "--n_epochs", "6", "--n_validation", "80", "--device", "cpu", *extra,
    ]


def test_training_lowers_validation_loss_and_writes_loadable_best(tmp_path):
    data_path = save_npz_pairs(_toy_pairs(), tmp_path / "pairs.npz")
    assert main(_train_argv(tmp_path, data_path)) == 0

    events = EventAccumulator(str(tmp_path / "logs")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "loss/val", "loss/recon", "loss/kl", "learning_rate"} <= tags
    val = [e.value for e in events.Scalars("loss/val")]
    assert len(val) == 1 + 6  # before training, then once per epoch
    assert min(val[1:]) < 0.5 * val[0]
    assert events.Scalars("learning_rate")[-1].value == pytest.approx(3e-3)

    best = load_prior(tmp_path / "out" / "prior.pt")
    assert best.config == PriorConfig(embed_dim=8, hidden_dim=32, latent_dim=4)


def test_fine_tuning_from_in_weights_keeps_its_sizes(tmp_path):
    data_path = save_npz_pairs(_toy_pairs(n=200), tmp_path / "pairs.npz")
    start = save_prior(GoalPrior(PriorConfig(8, 24, 6)), tmp_path / "start.pt")
    argv = _train_argv(tmp_path, data_path, "--in_weights", str(start), "--n_epochs", "1")
    assert main(argv) == 0
    assert load_prior(tmp_path / "out" / "prior.pt").config == PriorConfig(8, 24, 6)


def test_fine_tuning_keeps_the_input_until_an_epoch_beats_it(tmp_path):
    data_path = save_npz_pairs(_toy_pairs(n=200), tmp_path / "pairs.npz")
    trained = tmp_path / "trained"
    assert main(_train_argv(trained, data_path, "--n_epochs", "8")) == 0
    start = trained / "out" / "prior.pt"
    # A learning rate far too high for fine-tuning: the one epoch ends worse than the input on validation.
    worse = tmp_path / "worse"
    assert main(_train_argv(worse, data_path, "--in_weights", str(start), "--n_epochs", "1", "--lr", "0.3")) == 0
    kept, given = torch.load(worse / "out" / "prior.pt", weights_only=True), torch.load(start, weights_only=True)
    assert kept.keys() == given.keys() and all(torch.equal(kept[k], given[k]) for k in kept)
    text_log = (worse / "logs" / "train_prior.log").read_text()
    assert "of the starting prior (no epoch beat it)" in text_log and "New best" not in text_log
    val = [e.value for e in EventAccumulator(str(worse / "logs")).Reload().Scalars("loss/val")]
    assert val[1] > val[0]  # the epoch really was worse
    # A small learning rate improves on it: then the output is the better epoch, not the input.
    better = tmp_path / "better"
    assert main(_train_argv(better, data_path, "--in_weights", str(start), "--n_epochs", "2", "--lr", "1e-3")) == 0
    assert "New best validation loss" in (better / "logs" / "train_prior.log").read_text()
    improved = torch.load(better / "out" / "prior.pt", weights_only=True)
    assert not all(torch.equal(improved[k], given[k]) for k in improved)


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    data_path = save_npz_pairs(_toy_pairs(n=200), tmp_path / "pairs.npz")
    with pytest.raises(SystemExit, match="the loss became (nan|inf)"):
        main(_train_argv(tmp_path, data_path, "--lr", "1e30"))


def _write_original_pickle(path: Path, pairs: PriorPairs) -> None:
    """The original data.pkl: a dict of lists of (1, 512)-style arrays."""
    data = {"text_embeddings": [row[None] for row in pairs.text_embeds],
            "visual_embeddings": [row[None] for row in pairs.visual_embeds]}
    path.write_bytes(pickle.dumps(data))


def test_convert_only_writes_a_pickle_free_npz(tmp_path):
    pairs = _toy_pairs(n=100)
    pkl = tmp_path / "data.pkl"
    _write_original_pickle(pkl, pairs)
    assert main(["--data_path", str(pkl), "--trust_pickle", "--convert_only"]) == 0
    converted = load_npz_pairs(tmp_path / "data.npz")
    assert np.array_equal(converted.text_embeds, pairs.text_embeds)
    assert np.array_equal(converted.visual_embeds, pairs.visual_embeds)
    with np.load(tmp_path / "data.npz", allow_pickle=False) as raw:
        assert raw["text_embeds"].dtype == np.float32 and raw["text_embeds"].shape == (100, 8)


def test_an_existing_output_is_replaced_only_with_overwrite(tmp_path, capsys):
    data_path = save_npz_pairs(_toy_pairs(n=200), tmp_path / "pairs.npz")
    earlier = save_prior(GoalPrior(PriorConfig(8, 32, 4)), tmp_path / "out" / "prior.pt")
    kept = earlier.read_bytes()
    with pytest.raises(SystemExit) as refused:
        main(_train_argv(tmp_path, data_path, "--n_epochs", "1"))
    assert refused.value.code == 2 and "already exists (a prior trained earlier)" in capsys.readouterr().err
    assert earlier.read_bytes() == kept
    assert main(_train_argv(tmp_path, data_path, "--n_epochs", "1", "--overwrite")) == 0
    assert earlier.read_bytes() != kept and load_prior(earlier).config == PriorConfig(8, 32, 4)


def test_converting_the_same_pairs_again_writes_nothing(tmp_path, capsys):
    pairs = _toy_pairs(n=50)
    _write_original_pickle(tmp_path / "data.pkl", pairs)
    argv = ["--data_path", str(tmp_path / "data.pkl"), "--trust_pickle", "--convert_only"]
    assert main(argv) == 0
    first = (tmp_path / "data.npz").stat()
    capsys.readouterr()
    assert main(argv) == 0
    assert "Unchanged: " in capsys.readouterr().out
    assert (tmp_path / "data.npz").stat().st_mtime_ns == first.st_mtime_ns
    _write_original_pickle(tmp_path / "data.pkl", _toy_pairs(n=50, seed=1))
    assert main([*argv, "--overwrite"]) == 0
    assert np.array_equal(load_npz_pairs(tmp_path / "data.npz").text_embeds, _toy_pairs(n=50, seed=1).text_embeds)


def test_shell_script_flags_exist_in_the_entrypoint():
    script = (REPO_ROOT / "4_train_prior.sh").read_text()
    assert "prior_model/train_prior.py" in script
    known = {s for action in build_parser()._actions for s in action.option_strings}
    flags = set(re.findall(r"(--[a-z_]+)", script.split("prior_model/train_prior.py \\", 1)[1]))
    assert flags and flags <= known
