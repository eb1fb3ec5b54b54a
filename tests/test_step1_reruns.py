"""Re-running step 1 over episodes that exist: skipped only when made the way this run would make them.

Table-driven, from one converted dataset (a contractor recording from a local index and a custom recording):
- another MineCLIP (the demo flag, another weights file by sha256) or other labelling rules refuse the run in one
  line on stderr, exit status 2, before any work: every episode untouched, nothing new written;
- the same settings (also the same weights file moved) skip everything, exit status 0;
- an episode made from another recording fails alone, in one line naming the episode, what differs and the fix,
  while the other recordings convert; the episode stays as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from data.episode import METADATA_FILE
from data.generation import generate_dataset
from recording_factory import contractor_line, jsonl_bytes, write_index_video
from toolkit_utils import cli

N = 20  # frames per recording


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _recording(folder: Path, name: str, n: int = N, dx: float = 0.0) -> None:
    write_index_video(folder / name / "video.mp4", n)
    (folder / name / "actions.jsonl").write_bytes(jsonl_bytes([contractor_line(dx=dx) for _ in range(n)]))


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """Inputs and the episodes a first run made from them (demo MineCLIP, the default labelling rules)."""
    root = tmp_path_factory.mktemp("made")
    src = root / "src"
    write_index_video(src / "rec.mp4", N)
    (src / "rec.jsonl").write_bytes(jsonl_bytes([contractor_line() for _ in range(N)]))
    (root / "index.json").write_text(json.dumps({"basedir": "src", "relpaths": ["rec"]}))
    _recording(root / "in", "episode_a")
    assert _run(root) == 0
    return root


def _run(root: Path, *extra: str, mineclip: tuple[str, ...] = ("--demo_random_mineclip",), custom: str = "in") -> int:
    return cli.run_main("1_generate_dataset.sh", lambda: generate_dataset.main([
        "--indexes", str(root / "index.json"), "--output_dir", str(root / "contractor"), "--cache_dir", str(root / "cache"),
        "--custom_input_dir", str(root / custom), "--custom_output_dir", str(root / "custom"), *mineclip,
        "--device", "cpu", "--jobs", "1", "--min_timesteps", "16", "--num_episodes", "-1", *extra]))


def _copy(made: Path, tmp_path: Path) -> Path:
    root = tmp_path / "run"
    shutil.copytree(made, root)
    return root


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under the two output directories (the locks' pid stamps aside) -> sha256."""
    return {str(p.relative_to(root)): _sha256(p) for folder in ("contractor", "custom") for p in sorted((root / folder).rglob("*"))
            if p.is_file() and p.name != ".step1.lock"}


def _edit_mineclip(root: Path, **fields) -> None:
    """Make both episodes say they were embedded with other MineCLIP weights."""
    for path in (root / "contractor" / "rec" / METADATA_FILE, root / "custom" / "episode_a" / METADATA_FILE):
        metadata = json.loads(path.read_text())
        metadata["source"]["mineclip"] = {"config": "attn", **fields}
        path.write_text(json.dumps(metadata))


def _weights(root: Path, content: bytes = b"attn weights") -> Path:
    path = root / "attn.pth"
    path.write_bytes(content)
    return path


# name -> (prepare(root) -> run arguments, expected refusal after "1_generate_dataset.sh: ")
REFUSED = {
    "camera labels": (lambda root: ["--camera_labels", "float"],
                      "--output_dir {root}/contractor: 1 of its 1 episodes were made with other settings than this run's "
                      "(rec: camera_labels truncated, this run float), and a re-run would keep them as they are; delete "
                      "those episodes to convert them again with these settings, or choose another --output_dir"),
    "null filter": (lambda root: ["--null_filter", "agent"],
                    "--output_dir {root}/contractor: 1 of its 1 episodes were made with other settings than this run's "
                    "(rec: null_filter env, this run agent), and a re-run would keep them as they are; delete those "
                    "episodes to convert them again with these settings, or choose another --output_dir"),
    "real weights after demo ones": (
        lambda root: ["--mineclip_weights", str(_weights(root))],
        "--output_dir {root}/contractor: 1 of its 1 episodes were made with other settings than this run's (rec: "
        "MineCLIP random demo weights, this run {root}/attn.pth (sha256 {sha:.12}...)), and a re-run would keep them "
        "as they are; delete those episodes to convert them again with these settings, or choose another --output_dir"),
    "another weights file at the same path": (
        lambda root: (_edit_mineclip(root, weights=str(root / "attn.pth"), sha256="0" * 64, demo_random_weights=False),
                      ["--mineclip_weights", str(_weights(root))])[1],
        "--output_dir {root}/contractor: 1 of its 1 episodes were made with other settings than this run's (rec: "
        "MineCLIP {root}/attn.pth (sha256 000000000000...), this run {root}/attn.pth (sha256 {sha:.12}...)), and a "
        "re-run would keep them as they are; delete those episodes to convert them again with these settings, or "
        "choose another --output_dir"),
    "demo weights after real ones, and other labels": (
        lambda root: (_edit_mineclip(root, weights="/w/attn.pth", sha256="0" * 64, demo_random_weights=False),
                      ["--camera_labels", "float", "--demo_random_mineclip"])[1],
        "--output_dir {root}/contractor: 1 of its 1 episodes were made with other settings than this run's (rec: "
        "MineCLIP /w/attn.pth (sha256 000000000000...), this run random demo weights; camera_labels truncated, this "
        "run float), and a re-run would keep them as they are; delete those episodes to convert them again with "
        "these settings, or choose another --output_dir"),
    "custom episodes too": (
        lambda root: (shutil.rmtree(root / "contractor" / "rec"), ["--camera_labels", "float"])[1],
        "--custom_output_dir {root}/custom: 1 of its 1 episodes were made with other settings than this run's "
        "(episode_a: camera_labels truncated, this run float), and a re-run would keep them as they are; delete those "
        "episodes to convert them again with these settings, or choose another --custom_output_dir"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_rerun_with_other_settings_is_refused_before_any_work(made, tmp_path, capsys, case):
    root = _copy(made, tmp_path)
    prepare, expected = REFUSED[case]
    extra = prepare(root)
    before = _snapshot(root)
    mineclip = () if "--mineclip_weights" in extra or "--demo_random_mineclip" in extra else ("--demo_random_mineclip",)
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        _run(root, *extra, mineclip=mineclip)
    captured = capsys.readouterr()
    sha = _sha256(root / "attn.pth") if (root / "attn.pth").exists() else ""
    assert refused.value.code == 2 and captured.out == ""
    assert captured.err == "1_generate_dataset.sh: " + expected.format(root=root, sha=sha) + "\n"
    assert _snapshot(root) == before


# name -> (prepare(root) -> run arguments, expected exit status, lines the run must print)
SKIPPED = {
    "same settings": (lambda root: [], 0, ["1 already done or skipped, 0 to convert", "1 already converted, 0 to convert"]),
    "same weights file, moved": (
        lambda root: (_edit_mineclip(root, weights="/old/place/attn.pth", sha256=_sha256(_weights(root)),
                                     demo_random_weights=False),
                      ["--mineclip_weights", str(root / "attn.pth")])[1],
        0, ["1 already done or skipped, 0 to convert", "1 already converted, 0 to convert"]),
    "weights without a recorded sha256, same path": (
        lambda root: (_edit_mineclip(root, weights=str(_weights(root)), demo_random_weights=False),
                      ["--mineclip_weights", str(root / "attn.pth")])[1],
        0, ["1 already done or skipped, 0 to convert", "1 already converted, 0 to convert"]),
}


@pytest.mark.parametrize("case", list(SKIPPED))
def test_a_rerun_with_the_same_settings_skips_what_exists(made, tmp_path, capsys, case):
    root = _copy(made, tmp_path)
    prepare, status, lines = SKIPPED[case]
    extra = prepare(root)
    before = _snapshot(root)
    mineclip = () if "--mineclip_weights" in extra else ("--demo_random_mineclip",)
    capsys.readouterr()
    assert _run(root, *extra, mineclip=mineclip) == status
    out = capsys.readouterr().out
    assert all(line in out for line in lines), out
    assert "FAIL" not in out and _snapshot(root) == before


def _other_video(root: Path) -> list[str]:
    _recording(root / "in2", "episode_a", n=N + 4)  # another recording of the same name
    _recording(root / "in2", "episode_b")
    return ["in2"]


def _moved(root: Path) -> list[str]:
    shutil.copytree(root / "in", root / "in2")
    _recording(root / "in2", "episode_b")
    return ["in2"]


def _edited_actions(root: Path) -> list[str]:
    (root / "in" / "episode_a" / "actions.jsonl").write_bytes(jsonl_bytes([contractor_line(dx=20.0) for _ in range(N)]))
    _recording(root / "in", "episode_b")
    return ["in"]


def _edit_source(root: Path, episode: str, **fields) -> None:
    path = root / episode / METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata["source"].update(fields)
    path.write_text(json.dumps(metadata))


def _labelled_by_idm(root: Path) -> list[str]:
    _edit_source(root, "custom/episode_a", actions="idm")
    _recording(root / "in", "episode_b")
    return ["in"]


def _other_relpath(root: Path) -> list[str]:
    _edit_source(root, "contractor/rec", relpath="data/rec")
    _recording(root / "in", "episode_b")
    return ["in"]


# name -> (prepare(root) -> [custom input folder], the FAIL line after "FAIL ", or None: nothing fails). {made} is
# where the first run read the recordings (the episodes name the files they were made from).
RECORDINGS = {
    "another video of the same name": (
        _other_video, "episode_a: {root}/custom/episode_a exists but it was made from {made}/in/episode_a/video.mp4 "
                      "({bytes_a} bytes); this run's is {root}/in2/episode_a/video.mp4 ({bytes_a2} bytes); it is kept as "
                      "it is: delete it to convert this recording again, or convert into another output directory"),
    "edited actions": (
        _edited_actions, "episode_a: {root}/custom/episode_a exists but it was made from "
                         "{made}/in/episode_a/actions.jsonl ({actions_a} bytes); this run's is "
                         "{root}/in/episode_a/actions.jsonl ({actions_now} bytes); it is kept as it is: delete it to "
                         "convert this recording again, or convert into another output directory"),
    "labelled by the IDM, actions recorded now": (
        _labelled_by_idm, "episode_a: {root}/custom/episode_a exists but its actions were labelled by the IDM; this "
                          "run's recording has actions.jsonl; it is kept as it is: delete it to convert this recording "
                          "again, or convert into another output directory"),
    "another contractor relpath": (
        _other_relpath, "rec: {root}/contractor/rec exists but it was made from the recording data/rec; this run's is "
                        "rec; it is kept as it is: delete it to convert this recording again, or convert into another "
                        "output directory"),
    "the same recording, moved": (_moved, None),
}


@pytest.mark.parametrize("case", list(RECORDINGS))
def test_an_episode_made_from_another_recording_fails_alone(made, tmp_path, capsys, case):
    root = _copy(made, tmp_path)
    prepare, expected = RECORDINGS[case]
    bytes_a = (root / "in" / "episode_a" / "video.mp4").stat().st_size
    actions_a = (root / "in" / "episode_a" / "actions.jsonl").stat().st_size
    (custom,) = prepare(root)
    existing = {name: _snapshot_of(root / name) for name in ("contractor/rec", "custom/episode_a")}
    capsys.readouterr()
    status = _run(root, custom=custom)
    out = capsys.readouterr().out.splitlines()
    fails = [line for line in out if line.startswith("FAIL")]
    if expected is None:
        assert status == 0 and fails == []
    else:
        values = {"root": root, "made": made, "bytes_a": bytes_a, "actions_a": actions_a,
                  "bytes_a2": (root / custom / "episode_a" / "video.mp4").stat().st_size,
                  "actions_now": (root / custom / "episode_a" / "actions.jsonl").stat().st_size}
        assert status == 1 and fails == ["FAIL " + expected.format(**values)]
        assert out[-1] == "Done: 1 converted (20 frames), 0 skipped, 1 failed (re-run to retry failures)"
    assert (root / "custom" / "episode_b").is_dir()  # the other recording converted
    assert {name: _snapshot_of(root / name) for name in existing} == existing


def _snapshot_of(folder: Path) -> dict[str, str]:
    return {p.name: _sha256(p) for p in sorted(folder.iterdir())}


def test_the_weights_file_is_recorded_by_sha256_and_a_rerun_compares_it(tmp_path, monkeypatch, capsys):
    """End to end with a MineCLIP file (the attn.pth layout at tiny sizes): recorded, moved, then replaced."""
    import dataclasses

    from data.episode import load_episode
    from mineclip_model.mineclip import MineCLIP, MineCLIPConfig, save_mineclip

    tiny_512 = dataclasses.replace(MineCLIPConfig.tiny(), embed_dim=512)
    monkeypatch.setattr(MineCLIPConfig, "attn", classmethod(lambda cls: tiny_512))  # the loader builds "attn"
    weights = tmp_path / "w" / "attn.pth"
    weights.parent.mkdir()
    save_mineclip(MineCLIP(tiny_512).eval(), weights)
    root = tmp_path / "run"
    _recording(root / "in", "episode_a")
    (root / "index.json").write_text(json.dumps({"basedir": ".", "relpaths": []}))
    assert _run(root, mineclip=("--mineclip_weights", str(weights))) == 0
    mineclip = load_episode(root / "custom" / "episode_a").metadata["source"]["mineclip"]
    assert mineclip == {"weights": str(weights), "demo_random_weights": False, "config": "attn", "sha256": _sha256(weights)}

    moved = tmp_path / "elsewhere" / "attn.pth"
    moved.parent.mkdir()
    shutil.move(weights, moved)
    capsys.readouterr()
    assert _run(root, mineclip=("--mineclip_weights", str(moved))) == 0  # the same file: skipped
    assert "1 already converted, 0 to convert" in capsys.readouterr().out

    save_mineclip(MineCLIP(tiny_512).eval(), moved)  # other weights in the same file name
    with pytest.raises(SystemExit) as refused:
        _run(root, mineclip=("--mineclip_weights", str(moved)))
    assert refused.value.code == 2
    assert capsys.readouterr().err == (
        f"1_generate_dataset.sh: --custom_output_dir {root}/custom: 1 of its 1 episodes were made with other settings "
        f"than this run's (episode_a: MineCLIP {weights} (sha256 {mineclip['sha256']:.12}...), this run {moved} (sha256 "
        f"{_sha256(moved):.12}...)), and a re-run would keep them as they are; delete those episodes to convert them "
        "again with these settings, or choose another --custom_output_dir\n")
