"""The rollout without Minecraft: run_agent.py on the replay environment, run records, restarts, prompts, refusals.

Every model file here is written by the test in the real format with tiny random weights: a VPT .model and
STEVE-1 .weights (tiny preset), a MineCLIP attn.pth layout file (tiny sizes, 512-d embeddings), a prior .pt.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import run_agent
from model_file_factory import write_model_file
from conftest import randomize_
from data.video_io import VideoReader, VideoWriter, read_video_frames
from embed_conditioned_policy import SteveAgentPolicy
from MineRLConditionalAgent import MineRLConditionalAgent
from rollout.episode import EnvHolder, run_episode
from rollout.minerl_env import InvalidActionError, check_minerl_action
from rollout.programmatic_metrics import ProgrammaticMetrics
from rollout.replay_env import ReplayEnv
from toolkit_utils.file_hashes import file_sha256
from vpt_model.action_space import ENV_BUTTONS, joint_to_env_action
from vpt_model.config import preset
from vpt_model.model_files import save_policy_weights

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIP_FRAMES, CLIP_SIZE = 12, (72, 128)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """tiny.model, two different tiny .weights, a replay clip (12 frames of 72x128) and a .npy goal."""
    root = tmp_path_factory.mktemp("rollout_files")
    config = preset("tiny")
    write_model_file(config, root / "tiny.model")
    for i, name in enumerate(("base", "tuned")):
        torch.manual_seed(i)
        policy = SteveAgentPolicy(config)
        randomize_(policy, seed=i + 1)
        save_policy_weights(policy, root / f"{name}.weights")
    rng = np.random.default_rng(0)
    with VideoWriter(root / "clip.mp4") as writer:
        for _ in range(CLIP_FRAMES):
            writer.write(rng.integers(0, 256, (*CLIP_SIZE, 3), dtype=np.uint8))
    np.save(root / "goal.npy", rng.normal(size=512).astype(np.float32))
    return {"model": root / "tiny.model", "base": root / "base.weights", "tuned": root / "tuned.weights",
            "clip": root / "clip.mp4", "goal": root / "goal.npy", "root": root}


def _args(files: dict[str, Path], out: Path, *extra: str, weights: tuple[str, ...] = ("base",)) -> list[str]:
    return ["--in_model", str(files["model"]), "--in_weights", *[str(files[w]) for w in weights],
            "--replay_env", str(files["clip"]), "--save_dirpath", str(out), "--device", "cpu", *extra]


def _frames(path: Path) -> np.ndarray:
    return np.stack(list(read_video_frames(path)))


def _record(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text())


@pytest.fixture
def capture_agent(monkeypatch):
    """Records every agent.reset(cond_scale, seed), goal and action of MineRLConditionalAgent in this process."""
    calls: dict[str, list] = {"reset": [], "goals": [], "actions": []}
    reset, get_action = MineRLConditionalAgent.reset, MineRLConditionalAgent.get_action

    def recording_reset(self, cond_scale=None, seed=None):
        calls["reset"].append((cond_scale, seed))
        return reset(self, cond_scale, seed)

    def recording_get_action(self, obs, goal_embed, deterministic=False):
        action = get_action(self, obs, goal_embed, deterministic)
        calls["goals"].append(np.array(goal_embed))
        calls["actions"].append(action)
        return action

    monkeypatch.setattr(MineRLConditionalAgent, "reset", recording_reset)
    monkeypatch.setattr(MineRLConditionalAgent, "get_action", recording_get_action)
    return calls


# ---------------------------------------------------------------- the loop, its video and its record


def test_rollout_on_replay_env_writes_video_and_record(files, tmp_path, capture_agent):
    out = tmp_path / "videos"
    assert run_agent.main(_args(files, out, "--visual_prompt", str(files["goal"]), "--gameplay_length", "7",
                                "--seed", "3", "--num_videos", "2")) == 0
    video = out / "visual_goal_00.mp4"
    frames = _frames(video)
    assert frames.shape == (7, *CLIP_SIZE, 3)  # one frame per step, the size the environment renders
    source = _frames(files["clip"])
    assert np.abs(frames.astype(int) - source[1:8].astype(int)).mean() < 4  # the frames after each step, in order
    with VideoReader(video) as reader:
        assert reader.fps == 20
    record = _record(video)
    assert record["format"] == "steve1-toolkit-rollout" and record["video"] == "visual_goal_00.mp4"
    assert record["prompt"] is None and record["visual_prompt"]["sha256"] == file_sha256(files["goal"])
    assert record["cond_scale"] == 7.0 and record["cond_scale_source"] == "default for visual prompts"
    assert record["seed"] == 3 and record["seed_source"] == "--seed 3 + video index 0"
    assert _record(out / "visual_goal_01.mp4")["seed"] == 4
    weights = record["weights"]
    assert weights["in_weights"]["sha256"] == file_sha256(files["base"])
    assert weights["in_model"]["sha256"] == file_sha256(files["model"])
    assert weights["prior_weights"] is None and weights["mineclip_weights"] is None  # a .npy goal needs neither
    assert record["steps"] == record["frames"] == 7 and record["max_steps"] == 7
    assert record["ended"] == "max_steps" and record["env_restarts"] == 0 and record["env_failures"] == []
    assert record["wall_time_s"] > 0 and record["programmatic_metrics"] is None
    assert record["frame_size"] == list(CLIP_SIZE) and record["video_fps"] == 20
    assert "ReplayEnv" in record["environment"]
    assert not list(out.glob(".*partial*"))
    # the goal that reached the agent is the file's, at every step
    np.testing.assert_array_equal(capture_agent["goals"][0], np.load(files["goal"]))


def test_episode_ends_when_the_environment_says_done(files, tmp_path):
    out = tmp_path / "videos"
    assert run_agent.main(_args(files, out, "--visual_prompt", str(files["goal"]), "--gameplay_length", "50")) == 0
    record = _record(out / "visual_goal_00.mp4")
    assert record["ended"] == "env_done" and record["steps"] == CLIP_FRAMES - 1
    assert len(_frames(out / "visual_goal_00.mp4")) == CLIP_FRAMES - 1
    assert record["seed_source"] == "OS entropy (no --seed)" and 0 <= record["seed"] < 2**31


def test_text_prompt_goes_tokenizer_mineclip_prior_agent(files, tmp_path, monkeypatch, capture_agent):
    from mineclip_model.embedding import embed_text
    from mineclip_model.mineclip import MineCLIP, MineCLIPConfig, save_mineclip
    from prior_model.prior import GoalPrior, save_prior

    tiny_512 = dataclasses.replace(MineCLIPConfig.tiny(), embed_dim=512)
    # the attn.pth layout at tiny sizes: the loader builds the "attn" config, which is tiny here
    monkeypatch.setattr(MineCLIPConfig, "attn", classmethod(lambda cls: tiny_512))
    torch.manual_seed(0)
    mineclip = MineCLIP(tiny_512).eval()
    save_mineclip(mineclip, tmp_path / "attn.pth")
    prior = GoalPrior().eval()
    randomize_(prior)
    save_prior(prior, tmp_path / "prior.pt")
    out = tmp_path / "videos"
    assert run_agent.main(_args(files, out, "--custom_text_prompt", "chop a tree", "--gameplay_length", "3",
                                "--seed", "11", "--mineclip_weights", str(tmp_path / "attn.pth"),
                                "--prior_weights", str(tmp_path / "prior.pt"))) == 0
    text = torch.from_numpy(embed_text(mineclip, ["chop a tree"], device="cpu"))
    with torch.no_grad():
        expected = prior.sample(text, generator=torch.Generator().manual_seed(11))[0].numpy()
    np.testing.assert_allclose(capture_agent["goals"][0], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected, text[0].numpy())  # the prior changed the text embedding
    record = _record(out / "chop_a_tree_00.mp4")
    assert record["prompt"] == "chop a tree" and record["cond_scale"] == 6.0 and record["prior_seed"] == 11
    assert record["weights"]["prior_weights"]["sha256"] == file_sha256(tmp_path / "prior.pt")
    assert record["weights"]["mineclip_weights"]["sha256"] == file_sha256(tmp_path / "attn.pth")


def test_video_prompt_is_embedded_from_its_first_16_frames(files, tmp_path, monkeypatch, capture_agent):
    from mineclip_model.embedding import embed_clip, resize_frames_for_mineclip
    from mineclip_model.mineclip import MineCLIP, MineCLIPConfig, save_mineclip

    tiny_512 = dataclasses.replace(MineCLIPConfig.tiny(), embed_dim=512)
    monkeypatch.setattr(MineCLIPConfig, "attn", classmethod(lambda cls: tiny_512))
    mineclip = MineCLIP(tiny_512).eval()
    save_mineclip(mineclip, tmp_path / "attn.pth")
    frames = np.random.default_rng(1).integers(0, 256, (20, 90, 160, 3), dtype=np.uint8)
    with VideoWriter(tmp_path / "dig.mp4") as writer:
        for frame in frames:
            writer.write(frame)
    assert run_agent.main(_args(files, tmp_path / "v", "--visual_prompt", str(tmp_path / "dig.mp4"), "--gameplay_length",
                                "2", "--mineclip_weights", str(tmp_path / "attn.pth"))) == 0
    expected = embed_clip(mineclip, resize_frames_for_mineclip(_frames(tmp_path / "dig.mp4")[:16]), device="cpu")
    np.testing.assert_allclose(capture_agent["goals"][0], expected, rtol=1e-5, atol=1e-6)
    assert _record(tmp_path / "v" / "visual_dig_00.mp4")["cond_scale"] == 7.0


def test_cond_scale_and_seed_reach_the_agent(files, tmp_path, capture_agent):
    def actions(out: str, *extra: str) -> list[dict]:
        capture_agent["actions"].clear()
        assert run_agent.main(_args(files, tmp_path / out, "--visual_prompt", str(files["goal"]), "--gameplay_length", "4",
                                    *extra)) == 0
        return list(capture_agent["actions"])

    def same(a: list[dict], b: list[dict]) -> bool:
        return all(all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b, strict=True))

    first = actions("a", "--seed", "5", "--cond_scale", "2.5")
    assert capture_agent["reset"][-1] == (2.5, 5)
    assert same(first, actions("b", "--seed", "5", "--cond_scale", "2.5"))  # same seed: same actions
    assert not same(first, actions("c", "--seed", "6", "--cond_scale", "2.5"))  # another seed: other actions
    assert capture_agent["reset"][-1] == (2.5, 6)
    assert not same(first, actions("d", "--seed", "5", "--cond_scale", "0"))  # the scale changes the distribution
    assert capture_agent["reset"][-1] == (0.0, 5)


def test_two_weights_run_the_same_worlds_and_write_a_side_by_side(files, tmp_path, capture_agent):
    out = tmp_path / "cmp"
    assert run_agent.main(_args(files, out, "--visual_prompt", str(files["goal"]), "--gameplay_length", "5", "--seed", "0",
                                "--labels", "pre-trained", "fine-tuned", weights=("base", "tuned"))) == 0
    base, tuned = _record(out / "pre-trained" / "visual_goal_00.mp4"), _record(out / "fine-tuned" / "visual_goal_00.mp4")
    assert base["seed"] == tuned["seed"] == 0 and base["cond_scale"] == tuned["cond_scale"]
    assert base["weights"]["in_weights"]["sha256"] != tuned["weights"]["in_weights"]["sha256"]
    assert [seed for _, seed in capture_agent["reset"] if seed is not None] == [0, 0]  # both weights, world 0
    comparison = _frames(out / "side_by_side" / "visual_goal_00.mp4")
    assert comparison.shape[0] == 5 and comparison.shape[2] == 2 * CLIP_SIZE[1]


def test_a_rerun_skips_finished_rollouts_and_refuses_other_settings(files, tmp_path, capsys):
    out = tmp_path / "videos"
    argv = _args(files, out, "--visual_prompt", str(files["goal"]), "--gameplay_length", "3", "--seed", "1")
    assert run_agent.main(argv) == 0
    stamp = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert run_agent.main(argv) == 0
    assert "1 of 1 rollouts already done" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
    with pytest.raises(SystemExit) as exit_info:
        run_agent.main(argv + ["--cond_scale", "3"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "visual_goal_00.json was made with another cond_scale" in err and "--save_dirpath" in err
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamp


# ---------------------------------------------------------------- a dying environment


class DyingReplayEnv(ReplayEnv):
    """Raises ConnectionError at step `die_at` in the first `deaths` environments made (a crashing Minecraft)."""

    made = 0

    def __init__(self, source, die_at: int, deaths: int):
        super().__init__(source)
        type(self).made += 1
        self.dies = type(self).made <= deaths
        self.die_at = die_at

    def step(self, action):
        if self.dies and len(self.actions) + 1 == self.die_at:
            raise ConnectionError("Minecraft process hung up")
        return super().step(action)


@pytest.fixture
def agent(files):
    return MineRLConditionalAgent.from_files(files["model"], files["base"], device="cpu")


@pytest.mark.parametrize("deaths, restarts, expected_made, ended", [(1, 3, 2, "max_steps"), (99, 2, 3, "env_died")])
def test_a_dying_environment_is_restarted_at_most_n_times(files, tmp_path, agent, deaths, restarts, expected_made, ended):
    DyingReplayEnv.made = 0
    holder = EnvHolder(lambda: DyingReplayEnv(files["clip"], die_at=4, deaths=deaths))
    video = tmp_path / "v.mp4"
    result = run_episode(holder, agent, np.load(files["goal"]), 6.0, 0, 6, video, max_env_restarts=restarts)
    assert holder.made == DyingReplayEnv.made == expected_made
    assert result.ended == ended and result.env_restarts == expected_made - 1
    assert [f["step"] for f in result.env_failures] == [4] * (expected_made - 1 if ended == "max_steps" else expected_made)
    assert all("ConnectionError: Minecraft process hung up" in f["error"] for f in result.env_failures)
    if ended == "max_steps":
        assert len(_frames(video)) == 6  # only the attempt that finished
    else:
        assert not video.exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_run_agent_stops_after_the_restarts_and_the_record_says_so(files, tmp_path, monkeypatch, capsys):
    def step(self, action):
        raise EOFError("socket closed")

    monkeypatch.setattr(ReplayEnv, "step", step)
    out = tmp_path / "videos"
    code = run_agent.main(_args(files, out, "--visual_prompt", str(files["goal"]), "--gameplay_length", "4",
                                "--max_env_restarts", "2", "--num_videos", "3", "--seed", "0"))
    assert code == 1
    record = _record(out / "visual_goal_00.mp4")
    assert record["ended"] == "env_died" and record["env_restarts"] == 2 and len(record["env_failures"]) == 3
    assert record["video"] is None and not (out / "visual_goal_00.mp4").exists()
    assert not (out / "visual_goal_01.json").exists()  # the run stopped instead of failing every video
    assert "the environment died 3 times" in capsys.readouterr().out


# ---------------------------------------------------------------- refusals: one line, exit 2, nothing written


def _bad_prompt_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "prompts.txt"
    path.write_text(text)
    return str(path)


REFUSALS = [
    # (name, argv builder, text the one line must contain)
    ("no prompt", lambda f, t: [], "give exactly one of --custom_text_prompt"),
    ("two prompts", lambda f, t: ["--custom_text_prompt", "a", "--visual_prompt", str(f["goal"])], "give exactly one"),
    ("empty prompt", lambda f, t: ["--custom_text_prompt", "   "], "is an empty prompt; say what the agent should do"),
    ("bad line", lambda f, t: ["--prompts_file", _bad_prompt_file(t, "text: chop a tree\n\nchop a tree\n")],
     "prompts.txt:3 'chop a tree': does not start with 'text:' or 'visual:'"),
    ("empty text line", lambda f, t: ["--prompts_file", _bad_prompt_file(t, "# mine\ntext:\n")], "prompts.txt:2 '': is an empty prompt"),
    ("missing visual file", lambda f, t: ["--prompts_file", _bad_prompt_file(t, "visual: nothere.npy\n")],
     "prompts.txt:1"),
    ("same name twice", lambda f, t: ["--prompts_file", _bad_prompt_file(t, "text: chop a tree\ntext: Chop a tree!\n")],
     "gives the same video name 'chop_a_tree'"),
    ("only comments", lambda f, t: ["--prompts_file", _bad_prompt_file(t, "# nothing\n")], "holds no prompt"),
    ("wrong visual kind", lambda f, t: ["--visual_prompt", str(f["model"])], "is neither a .npy goal embedding nor a video"),
    ("missing weights", lambda f, t: ["--visual_prompt", str(f["goal"]), "--in_weights", str(t / "nope.weights")],
     "--in_weights " + "{t}/nope.weights: not found; download it with bash download_weights.sh"),
    ("missing prior", lambda f, t: ["--custom_text_prompt", "dig", "--prior_weights", str(t / "p.pt")], "--prior_weights"),
    ("labels count", lambda f, t: ["--visual_prompt", str(f["goal"]), "--labels", "a", "b"], "gives 2 labels for 1"),
    ("negative scale", lambda f, t: ["--visual_prompt", str(f["goal"]), "--cond_scale", "-1"], "--cond_scale"),
    ("zero length", lambda f, t: ["--visual_prompt", str(f["goal"]), "--gameplay_length", "0"], "--gameplay_length"),
    ("negative seed", lambda f, t: ["--visual_prompt", str(f["goal"]), "--seed", "-1"], "--seed"),
    ("abbreviation", lambda f, t: ["--visual_prompt", str(f["goal"]), "--gameplay", "3"], "unrecognized arguments"),
    ("bad device", lambda f, t: ["--visual_prompt", str(f["goal"]), "--device", "gpu"], "--device gpu: is not a device"),
    ("not a weights file", lambda f, t: ["--visual_prompt", str(f["goal"]), "--in_weights", str(f["clip"])],
     "does not load with --in_model"),
    ("not a MineCLIP file", lambda f, t: ["--custom_text_prompt", "dig", "--prior_weights", str(f["base"]),
                                          "--mineclip_weights", str(f["base"])], "'dig': gives no goal embedding"),
    ("missing replay", lambda f, t: ["--visual_prompt", str(f["goal"]), "--replay_env", str(t / "none.mp4")],
     "--replay_env {t}/none.mp4: not found"),
]


def _write_bad_npy(path: Path) -> str:
    np.save(path, np.zeros((3, 7), np.float32))
    return str(path)


def _write_short_clip(path: Path) -> str:
    with VideoWriter(path) as writer:
        for _ in range(5):
            writer.write(np.zeros((32, 32, 3), np.uint8))
    return str(path)


REFUSALS += [
    ("npy of another shape", lambda f, t: ["--visual_prompt", _write_bad_npy(t / "g.npy")], "holds float32 [3, 7]"),
    ("clip too short", lambda f, t: ["--visual_prompt", _write_short_clip(t / "c.mp4")], "has 5 frames; a visual prompt needs 16"),
]


@pytest.mark.parametrize("name, build, expected", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_bad_settings_are_refused_in_one_line(files, tmp_path, capsys, name, build, expected):
    out = tmp_path / "videos"
    argv = ["--in_model", str(files["model"]), "--in_weights", str(files["base"]), "--replay_env", str(files["clip"]),
            "--save_dirpath", str(out), "--device", "cpu", *build(files, tmp_path)]
    # later options win in argparse, so a case's own --in_weights replaces the default one
    with pytest.raises(SystemExit) as exit_info:
        run_agent.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("run_agent.py: ")
    assert expected.format(t=tmp_path) in err
    assert not out.exists()


def test_missing_minerl_is_one_line_without_a_traceback(files, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "run_agent.py", "--visual_prompt", str(files["goal"]), "--save_dirpath",
                             str(tmp_path / "v")], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=120)
    try:
        import minerl  # noqa: F401
    except ImportError:
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert "MineRL 1.x is not installed" in result.stderr and "requirements-minerl.txt" in result.stderr
        assert "--replay_env" in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "v").exists()
    else:
        pytest.skip("MineRL is installed here")


# ---------------------------------------------------------------- the replay environment and the action check


def test_replay_env_replays_an_episode_directory(tmp_path):
    from episode_factory import frame_indices, make_episode

    make_episode(tmp_path / "ep", 20, seed=0)
    env = ReplayEnv(tmp_path / "ep")
    env.seed(7)
    seen = [env.reset()["pov"]]
    done = False
    while not done:
        obs, reward, done, info = env.step(joint_to_env_action(0, 60))
        seen.append(obs["pov"])
        assert reward == 0.0 and info == {}
    env.close()
    assert env.seeds == [7] and len(env.actions) == 19
    np.testing.assert_array_equal(frame_indices(np.stack(seen)), np.arange(20))
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step(joint_to_env_action(0, 60))


def _valid() -> dict:
    return joint_to_env_action(1234, 17)


BAD_ACTIONS = [
    ("missing key", lambda a: a.pop("swapHands"), "missing ['swapHands']"),
    ("unknown key", lambda a: a.update(chat=0), "unknown ['chat']"),
    ("button 2", lambda a: a.update(attack=2), "action['attack'] must be the int 0 or 1"),
    ("bool button", lambda a: a.update(jump=True), "action['jump'] must be the int 0 or 1"),
    ("float button", lambda a: a.update(use=1.0), "action['use'] must be the int 0 or 1"),
    ("array button", lambda a: a.update(use=np.array([1])), "action['use'] must be the int 0 or 1"),
    ("camera list", lambda a: a.update(camera=[0.0, 0.0]), "got list"),
    ("camera shape", lambda a: a.update(camera=np.zeros((1, 2), np.float32)), "got float32 (1, 2)"),
    ("camera ints", lambda a: a.update(camera=np.zeros(2, np.int64)), "got int64 (2,)"),
    ("camera nan", lambda a: a.update(camera=np.array([np.nan, 0.0], np.float32)), "outside [-180, 180]"),
    ("camera 200", lambda a: a.update(camera=np.array([0.0, 200.0], np.float32)), "outside [-180, 180]"),
]


@pytest.mark.parametrize("name, corrupt, message", BAD_ACTIONS, ids=[b[0] for b in BAD_ACTIONS])
def test_replay_env_refuses_actions_minerl_would_not_take(files, name, corrupt, message):
    action = _valid()
    check_minerl_action(action)
    assert set(action) == set(ENV_BUTTONS) | {"camera"} and len(action) == 24
    corrupt(action)
    env = ReplayEnv(files["clip"])
    env.reset()
    with pytest.raises(InvalidActionError) as error:
        env.step(action)
    env.close()
    assert message in str(error.value)


def test_the_agent_only_emits_valid_actions(agent):
    agent.reset(cond_scale=6.0, seed=0)
    obs = {"pov": np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8)}
    for _ in range(20):
        check_minerl_action(agent.get_action(obs, np.zeros(512, np.float32)))


# ---------------------------------------------------------------- STEVE-1's programmatic metrics


def _obs(x: float, z: float, **inventory: int) -> dict:
    return {"inventory": {k: np.array(v) for k, v in inventory.items()},
            "location_stats": {"xpos": np.array(x), "ypos": np.array(64.0), "zpos": np.array(z)}}


def test_programmatic_metrics_follow_the_original_rules():
    metrics = ProgrammaticMetrics(_obs(10.0, -5.0, oak_log=3))  # what reset() shows is not counted
    assert metrics.as_dict() == {"max_logs": 0, "max_dirt": 0, "max_seeds": 0, "max_travel_distance": 0.0}
    metrics.update(_obs(13.0, -1.0, oak_log=2, birch_log=3, dirt=1, coarse_dirt=1, wheat_seeds=4, stone=9))
    metrics.update(_obs(10.0, -5.0, oak_log=1, dirt=7, log_pile=5))  # "log_pile" has no "_log"; back at the start
    assert metrics.as_dict() == {"max_logs": 5, "max_dirt": 7, "max_seeds": 4, "max_travel_distance": 5.0}


def test_the_rollout_records_metrics_when_the_environment_provides_them(files, tmp_path, agent):
    class SurvivalLikeEnv(ReplayEnv):
        """The replay plus the inventory and position observations MineRL's HumanSurvival has."""

        def reset(self):
            return {**super().reset(), **_obs(0.0, 0.0)}

        def step(self, action):
            obs, reward, done, info = super().step(action)
            n = len(self.actions)
            return {**obs, **_obs(3.0 * n, 4.0 * n, spruce_log=n)}, reward, done, info

    result = run_episode(EnvHolder(lambda: SurvivalLikeEnv(files["clip"])), agent, np.load(files["goal"]), 6.0, 0, 3,
                         tmp_path / "v.mp4", max_env_restarts=0)
    assert result.programmatic_metrics == {"max_logs": 3, "max_dirt": 0, "max_seeds": 0, "max_travel_distance": 15.0}


# ---------------------------------------------------------------- side by side and the overlay


def _write_levels(path: Path, levels: list[int], size: tuple[int, int]) -> None:
    with VideoWriter(path) as writer:
        for level in levels:
            writer.write(np.full((*size, 3), level, np.uint8))


def test_side_by_side_puts_each_input_in_its_own_half(tmp_path):
    from rollout.side_by_side import render_side_by_side

    left, right = [20 * t for t in range(10)], [250 - 30 * t for t in range(6)]
    _write_levels(tmp_path / "a.mp4", left, (64, 96))
    _write_levels(tmp_path / "b.mp4", right, (32, 48))  # half the size: scaled to the first's height
    out = render_side_by_side([tmp_path / "a.mp4", tmp_path / "b.mp4"], ["pre-trained", "fine-tuned"],
                              tmp_path / "sbs.mp4", progress=False)
    frames = _frames(out).astype(int)
    band = frames.shape[1] - 64
    assert frames.shape == (10, band + 64, 192, 3) and band >= 24
    for t in range(10):
        assert abs(frames[t, band + 4 :, 4:92].mean() - left[t]) < 4  # frame t of a, in the left half
        assert abs(frames[t, band + 4 :, 100:188].mean() - right[min(t, 5)]) < 4  # b, its last frame held
    assert frames[:, :band].max() > 200  # white label text on the black band
    labels_before, labels_after = frames[5, :band, 96:], frames[6, :band, 96:]
    assert np.abs(labels_before - labels_after).mean() > 1  # the label says "(ended)" once b is over


def test_side_by_side_cli_refuses_in_one_line(tmp_path, capsys):
    from rollout import side_by_side
    from toolkit_utils import cli

    _write_levels(tmp_path / "a.mp4", [10, 20], (32, 32))
    for argv, expected in [([str(tmp_path / "a.mp4"), "--output", str(tmp_path / "o.mp4")], "is one video; give two or more"),
                           ([str(tmp_path / "a.mp4"), str(tmp_path / "x.mp4"), "--output", str(tmp_path / "o.mp4")],
                            "x.mp4: not found")]:
        with pytest.raises(SystemExit) as exit_info:
            cli.run_main("side_by_side", lambda: side_by_side.main(argv))
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and expected in err
    assert not (tmp_path / "o.mp4").exists()


# (arguments after the two inputs a.mp4 and b.mp4 in {d}, the one line on stderr after "side_by_side: ")
SIDE_BY_SIDE_OUTPUT_ROWS = {
    "output is the first input": (["--output", "{d}/a.mp4"],
                                  "--output {d}/a.mp4: is the input video {d}/a.mp4; writing it would destroy that input; "
                                  "choose another --output path"),
    "output is an input, spelled differently": (["--output", "{d}/sub/../b.mp4"],
                                                "--output {d}/sub/../b.mp4: is the input video {d}/b.mp4; writing it "
                                                "would destroy that input; choose another --output path"),
    "output is a link to an input": (["--output", "{d}/link.mp4"],
                                     "--output {d}/link.mp4: is the input video {d}/a.mp4; writing it would destroy "
                                     "that input; choose another --output path"),
    "output is an input, even with --overwrite": (["--output", "{d}/b.mp4", "--overwrite"],
                                                  "--output {d}/b.mp4: is the input video {d}/b.mp4; writing it would "
                                                  "destroy that input; choose another --output path"),
    "output exists": (["--output", "{d}/earlier.mp4"],
                      "--output {d}/earlier.mp4: already exists; add --overwrite to replace it, or choose another "
                      "--output path"),
    "output is a folder": (["--output", "{d}/sub", "--overwrite"],
                           "--output {d}/sub: is a folder; name the mp4 file to write, e.g. --output side_by_side/x.mp4"),
}


@pytest.mark.parametrize("row", sorted(SIDE_BY_SIDE_OUTPUT_ROWS))
def test_side_by_side_keeps_its_inputs_and_an_existing_output(row, tmp_path, capsys):
    from rollout import side_by_side
    from toolkit_utils import cli

    extra, expected = SIDE_BY_SIDE_OUTPUT_ROWS[row]
    _write_levels(tmp_path / "a.mp4", [10, 20], (32, 32))
    _write_levels(tmp_path / "b.mp4", [30, 40], (32, 32))
    (tmp_path / "earlier.mp4").write_bytes(b"an earlier comparison")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.mp4").symlink_to(tmp_path / "a.mp4")
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    argv = [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")] + [x.format(d=tmp_path) for x in extra]
    with pytest.raises(SystemExit) as exit_info:
        cli.run_main("side_by_side", lambda: side_by_side.main(argv))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"side_by_side: {expected.format(d=tmp_path)}\n"
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.mp4", "b.mp4", "earlier.mp4", "link.mp4", "sub"]


def test_side_by_side_overwrite_replaces_an_existing_output(tmp_path, capsys):
    from rollout import side_by_side

    _write_levels(tmp_path / "a.mp4", [10, 20], (32, 32))
    _write_levels(tmp_path / "b.mp4", [30, 40], (32, 32))
    (tmp_path / "earlier.mp4").write_bytes(b"an earlier comparison")
    argv = [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), "--output", str(tmp_path / "earlier.mp4"), "--overwrite"]
    assert side_by_side.main(argv) == 0
    assert len(_frames(tmp_path / "earlier.mp4")) == 2


def test_overlay_writes_the_prompt_on_the_video_only(files, tmp_path, capture_agent):
    out = tmp_path / "v"
    assert run_agent.main(_args(files, out, "--visual_prompt", str(files["goal"]), "--gameplay_length", "3",
                                "--overlay_prompt")) == 0
    video = _frames(out / "visual_goal_00.mp4").astype(int)
    plain = _frames(files["clip"])[1:4].astype(int)
    top_left = np.abs(video[:, :12, :64] - plain[:, :12, :64]).mean()
    rest = np.abs(video[:, 24:, :] - plain[:, 24:, :]).mean()
    assert top_left > 10 * rest and rest < 4
    assert _record(out / "visual_goal_00.mp4")["prompt_overlay"] is True


# ---------------------------------------------------------------- the guide's comparison script, as a dry run


@pytest.mark.slow  # a whole script or process end to end: run_tests.sh --all and CI run it
def test_compare_script_dry_run_writes_both_rollouts_and_the_comparison(files, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"visual: {files['goal']}\n")
    env = {**os.environ, "PYTHON": sys.executable, "PROMPTS_FILE": str(prompts), "IN_MODEL": str(files["model"]),
           "BASE_WEIGHTS": str(files["base"]), "FINETUNED_WEIGHTS": str(files["tuned"]), "GAMEPLAY_LENGTH": "4",
           "NUM_VIDEOS": "1", "SAVE_DIRPATH": str(tmp_path / "cmp"), "REPLAY_ENV": str(files["clip"]), "DEVICE": "cpu"}
    result = subprocess.run(["bash", "2_test_finetuned_model.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    base, tuned = _record(tmp_path / "cmp/pre-trained/visual_goal_00.mp4"), _record(tmp_path / "cmp/fine-tuned/visual_goal_00.mp4")
    assert base["seed"] == tuned["seed"] == 0
    assert len(_frames(tmp_path / "cmp/side_by_side/visual_goal_00.mp4")) == 4
