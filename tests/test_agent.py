"""MineRLConditionalAgent: observation handling, classifier-free guidance, env actions (no MineRL)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from model_file_factory import write_model_file
from MineRLConditionalAgent import MineRLConditionalAgent
from vpt_model.frame_resize import resize_frame
from vpt_model.action_space import ENV_BUTTONS
from vpt_model.model_files import save_policy_weights


def _obs(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"pov": rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)}


def _goal(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=512).astype(np.float32)


def _kl(p_log: torch.Tensor, q_log: torch.Tensor) -> float:
    p_log, q_log = torch.log_softmax(p_log, -1), torch.log_softmax(q_log, -1)
    return float((p_log.exp() * (p_log - q_log)).sum())


def test_cond_scale_zero_equals_plain_conditional_policy(tiny_policy):
    plain, guided = MineRLConditionalAgent(tiny_policy, "cpu"), MineRLConditionalAgent(tiny_policy, "cpu")
    plain.reset(cond_scale=None)
    guided.reset(cond_scale=0.0)
    for step in range(4):  # the state carries over steps in both
        pd_plain = plain.action_distribution(_obs(step), _goal())
        pd_guided = guided.action_distribution(_obs(step), _goal())
        for key in pd_plain:
            torch.testing.assert_close(pd_plain[key], pd_guided[key], atol=1e-5, rtol=1e-5)


def _uncond(policy, seed: int) -> dict[str, torch.Tensor]:
    agent = MineRLConditionalAgent(policy, "cpu")
    agent.reset(None)
    return agent.action_distribution(_obs(seed), np.zeros(512, np.float32))


def test_guidance_moves_away_from_unconditional(tiny_policy):
    uncond = _uncond(tiny_policy, 1)
    kls = []
    for scale in (0.0, 3.0):
        agent = MineRLConditionalAgent(tiny_policy, "cpu")
        agent.reset(cond_scale=scale)
        kls.append(_kl(agent.action_distribution(_obs(1), _goal())["buttons"][0], uncond["buttons"][0]))
    assert kls[1] > kls[0] > 0


def test_guided_log_probs_follow_formula(tiny_policy):
    cond_agent, guided = MineRLConditionalAgent(tiny_policy, "cpu"), MineRLConditionalAgent(tiny_policy, "cpu")
    cond_agent.reset(None)
    guided.reset(cond_scale=2.0)
    cond = cond_agent.action_distribution(_obs(2), _goal())
    uncond = _uncond(tiny_policy, 2)
    pd = guided.action_distribution(_obs(2), _goal())
    torch.testing.assert_close(pd["camera"], 3.0 * cond["camera"] - 2.0 * uncond["camera"], atol=1e-5, rtol=1e-5)


def test_get_action_returns_a_minerl_action(tiny_policy):
    agent = MineRLConditionalAgent(tiny_policy, "cpu", seed=0)
    agent.reset(cond_scale=5.0)
    action = agent.get_action(_obs(3), _goal())
    assert set(action) == set(ENV_BUTTONS) | {"camera"}
    assert action["camera"].shape == (2,) and all(v in (0, 1) for k, v in action.items() if k != "camera")


def test_a_minerl_frame_is_resized_as_vpt_does(tiny_policy):
    """A 360x640 frame must reach the policy as cv2.resize(frame, (128, 128), INTER_LINEAR), nothing else."""
    pov = _obs(4)["pov"]
    linear = cv2.resize(pov, (128, 128), interpolation=cv2.INTER_LINEAR)
    area = cv2.resize(pov, (128, 128), interpolation=cv2.INTER_AREA)
    assert np.abs(linear.astype(int) - area.astype(int)).mean() > 10  # the two resizes differ a lot on noise

    def dist(frame):
        agent = MineRLConditionalAgent(tiny_policy, "cpu")
        return agent.action_distribution({"pov": frame}, _goal())["buttons"]

    from_minerl = dist(pov)
    torch.testing.assert_close(from_minerl, dist(linear), rtol=0, atol=0)
    assert not torch.allclose(from_minerl, dist(area), atol=1e-4)
    # height and width in the right order: a non-square target shows a swap
    frame = np.random.default_rng(5).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    resized = resize_frame(frame, (20, 40))
    assert resized.shape == (20, 40, 3)
    np.testing.assert_array_equal(resized, cv2.resize(frame, (40, 20), interpolation=cv2.INTER_LINEAR))
    assert resize_frame(linear, (128, 128)) is linear  # already the policy's size: passed through


def test_unseeded_agents_draw_from_os_entropy(tiny_policy):
    """Without a seed each agent (and so each process) has its own action noise; with one, the same noise."""
    seeds = {MineRLConditionalAgent(tiny_policy, "cpu").generator.initial_seed() for _ in range(3)}
    assert len(seeds) == 3
    assert seeds.isdisjoint({torch.Generator().initial_seed()})  # not torch's fixed default seed
    assert MineRLConditionalAgent(tiny_policy, "cpu", seed=9).generator.initial_seed() == 9

    def actions(agent, seed=None):
        agent.reset(cond_scale=6.0, seed=seed)
        return [sorted((k, np.asarray(v).tolist()) for k, v in agent.get_action(_obs(s), _goal()).items()) for s in range(4)]

    one, two = MineRLConditionalAgent(tiny_policy, "cpu"), MineRLConditionalAgent(tiny_policy, "cpu")
    assert actions(one) != actions(two)
    assert actions(one, seed=3) == actions(two, seed=3)  # reset(seed=...) restarts the stream


def test_seeded_sampling_is_repeatable_and_reset_clears_state(tiny_policy):
    def rollout(seed):
        agent = MineRLConditionalAgent(tiny_policy, "cpu", seed=seed)
        agent.reset(cond_scale=1.0)
        return [agent.get_action(_obs(s), _goal()) for s in range(3)]

    first, second = rollout(7), rollout(7)
    assert all(
        all(np.array_equal(np.asarray(x[k]), np.asarray(y[k])) for k in x) for x, y in zip(first, second)
    )
    agent = MineRLConditionalAgent(tiny_policy, "cpu")
    start = agent.action_distribution(_obs(0), _goal())
    agent.action_distribution(_obs(1), _goal())
    agent.reset(None)
    again = agent.action_distribution(_obs(0), _goal())
    torch.testing.assert_close(start["buttons"], again["buttons"])


def test_from_files(tiny_policy, tiny_config, tmp_path):
    write_model_file(tiny_config, tmp_path / "tiny.model")
    save_policy_weights(tiny_policy, tmp_path / "tiny.weights")
    agent = MineRLConditionalAgent.from_files(tmp_path / "tiny.model", tmp_path / "tiny.weights", device="cpu")
    ref = MineRLConditionalAgent(tiny_policy, "cpu")
    torch.testing.assert_close(
        agent.action_distribution(_obs(5), _goal())["camera"], ref.action_distribution(_obs(5), _goal())["camera"]
    )
