"""Step 1 against malformed inputs, table-driven: jsonl lines, videos, HTTP answers, indexes, episodes, settings.

Recording cases run together as one index served from 127.0.0.1 (one run, as step 1 meets them at scale). For
each: the exact one-line outcome, the exit status, that an episode converted before is untouched and that no
bad download stays in the cache; then every input is fixed and a re-run converts them all.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from data.episode import ACTIONS_FILE, EMBEDS_FILE, validate_episode
from data.generation import convert_from_contractor, generate_dataset
from local_http import serve
from recording_factory import contractor_line, index_video_frames, jsonl_bytes, write_index_video
from test_episode_storage import write_episode
from toolkit_utils import cli

N = 16  # frames of a good recording (the fewest an episode can have)
XML_ERROR = (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound</Code><Message>The specified blob '
             b'does not exist.</Message></Error>')
HTML_ERROR = b"<!DOCTYPE html><html><body><h1>Service Unavailable</h1></body></html>"


def _lines(edit_at: int | None = None, edit=None, n: int = N) -> bytes:
    """N good contractor lines (forward pressed), line `edit_at` (1-based) replaced by edit(line)."""
    lines = [contractor_line() for _ in range(n)]
    if edit_at is not None:
        lines[edit_at - 1] = edit(lines[edit_at - 1])
    return jsonl_bytes(lines)


def _mouse(**fields):
    return lambda line: {**line, "mouse": {**line["mouse"], **fields}}


def _without(section: str, key: str):
    def edit(line):
        line = json.loads(json.dumps(line))
        del line[section][key]
        return line
    return edit


def _video_bytes(tmp: Path, name: str, n: int = N, fps: int = 20, size: tuple[int, int] = (640, 360),
                 pix_fmt: str = "yuv420p") -> bytes:
    path = tmp / f"{name}.mp4"
    if pix_fmt == "yuv420p":
        write_index_video(path, n, fps=fps, size=size)
    else:  # odd frame sizes need a format without chroma subsampling
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], pix_fmt
            for frame in index_video_frames(n, size):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=pix_fmt)))
            container.mux(stream.encode(None))
    return path.read_bytes()


def _zero_frame_mp4(tmp: Path) -> bytes:
    path = tmp / "zero.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=20)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        container.start_encoding()
    return path.read_bytes()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("media")
    good = _video_bytes(tmp, "good")
    return {"good": good, "truncated": good[: int(len(good) * 0.6)], "zero": _zero_frame_mp4(tmp),
            "odd": _video_bytes(tmp, "odd", size=(641, 361), pix_fmt="yuv444p"),
            "fps30": _video_bytes(tmp, "fps30", n=N * 3 // 2, fps=30), "fps2": _video_bytes(tmp, "fps2", fps=2)}


class Pattern(str):
    """An expected message given as a regular expression (placeholders are filled in escaped)."""


# name -> (video (a media key, bytes, or None: 404), jsonl bytes or None, server tweaks, expected outcome line).
# In the expected line: {jsonl} and {video} are the cached files, {url} the server, "OK" a converted episode.
JSONL = "{jsonl}"
CASES: dict[str, tuple] = {
    # --- jsonl lines
    "dx_nan": ("good", _lines(3, _mouse(dx=float("nan"))), {}, f"{JSONL}:3: mouse.dx: NaN is not a finite number"),
    "dy_1e40": ("good", _lines(3, _mouse(dy=1e40)), {}, f"{JSONL}:3: mouse.dy: 1e+40 px is outside -1200..1200"),
    "dx_1e30": ("good", _lines(4, _mouse(dx=1e30)), {}, f"{JSONL}:4: mouse.dx: 1e+30 px is outside -1200..1200"),
    "dx_bool": ("good", _lines(2, _mouse(dx=True)), {}, f"{JSONL}:2: mouse.dx: the boolean true, expected a number"),
    "keys_null": ("good", _lines(5, lambda l: {**l, "keyboard": {"keys": None}}), {},
                  f"{JSONL}:5: keyboard.keys: null, expected a list of key names"),
    "keys_string": ("good", _lines(5, lambda l: {**l, "keyboard": {"keys": "key.keyboard.w"}}), {},
                    f'{JSONL}:5: keyboard.keys: the string "key.keyboard.w", expected a list of key names'),
    "keys_number": ("good", _lines(6, lambda l: {**l, "keyboard": {"keys": ["key.keyboard.w", 87]}}), {},
                    f"{JSONL}:6: keyboard.keys[1]: the number 87, expected a key name"),
    "keys_missing": ("good", _lines(6, _without("keyboard", "keys")), {}, f"{JSONL}:6: keyboard.keys: missing"),
    "buttons_string": ("good", _lines(7, _mouse(buttons="0")), {},
                       f'{JSONL}:7: mouse.buttons: the string "0", expected a list of mouse button ids'),
    "button_negative": ("good", _lines(7, _mouse(buttons=[-1])), {},
                        f"{JSONL}:7: mouse.buttons[0]: the number -1, expected a mouse button id (a whole number >= 0)"),
    "new_buttons_null": ("good", _lines(1, _mouse(newButtons=None)), {},
                         f"{JSONL}:1: mouse.newButtons: null, expected a list of mouse button ids"),
    "dy_missing": ("good", _lines(8, _without("mouse", "dy")), {}, f"{JSONL}:8: mouse.dy: missing"),
    "hotbar_42": ("good", _lines(8, lambda l: {**l, "hotbar": 42}), {}, f"{JSONL}:8: hotbar: 42 is outside 0..8"),
    "hotbar_string": ("good", _lines(8, lambda l: {**l, "hotbar": "3"}), {},
                      f'{JSONL}:8: hotbar: the string "3", expected a slot 0..8'),
    "hotbar_float": ("good", _lines(8, lambda l: {**l, "hotbar": 2.5}), {},
                     f"{JSONL}:8: hotbar: the number 2.5, expected a slot 0..8"),
    "gui_x_nan": ("good", _lines(9, lambda l: {**_mouse(x=float("nan"))(l), "isGuiOpen": True}), {},
                  f"{JSONL}:9: mouse.x: NaN is not a finite number"),
    "gui_x_far": ("good", _lines(9, lambda l: {**_mouse(x=1e9)(l), "isGuiOpen": True}), {},
                  f"{JSONL}:9: mouse.x: 1e+09 px is outside -1280..2560"),
    "gui_without_y": ("good", _lines(9, lambda l: {**_without("mouse", "y")(l), "isGuiOpen": True}), {},
                      f"{JSONL}:9: mouse.y: missing"),
    "gui_flag_string": ("good", _lines(9, lambda l: {**l, "isGuiOpen": "yes"}), {},
                        f'{JSONL}:9: isGuiOpen: the string "yes", expected true or false'),
    "line_list": ("good", _lines(10, lambda l: [1, 2]), {}, f"{JSONL}:10: line: a list [1, 2], expected an object or null"),
    "line_number": ("good", _lines(10, lambda l: 5), {}, f"{JSONL}:10: line: the number 5, expected an object or null"),
    "mouse_string": ("good", _lines(11, lambda l: {**l, "mouse": "left"}), {},
                     f'{JSONL}:11: mouse: the string "left", expected an object or null'),
    "keyboard_list": ("good", _lines(11, lambda l: {**l, "keyboard": []}), {},
                      f"{JSONL}:11: keyboard: a list [], expected an object or null"),
    "env_line_in_contractor_file": ("good", _lines(12, lambda l: {"forward": 1}), {},
                                    f"{JSONL}:12: mouse: missing (a contractor line has mouse and keyboard, each an "
                                    "object or null)"),
    "truncated_jsonl": ("good", _lines()[:-25], {}, Pattern(JSONL + rf":{N}: line: not valid JSON \(.+\)")),
    "fewer_lines": ("good", _lines(n=N - 6), {},
                    f"{{video}}: {N} video frames but {N - 6} action lines (--max_length_mismatch 2 allows trimming "
                    "small differences)"),
    "env_unknown_key": ("good", jsonl_bytes([{"forward": 1}] * 3 + [{"fly": 1}] + [{"forward": 1}] * (N - 4)), {},
                        f"{JSONL}:4: fly: unknown action name (expected a MineRL button name or camera)"),
    "env_camera_range": ("good", jsonl_bytes([{"forward": 1, "camera": [200, 0]}] * N), {},
                         f"{JSONL}:1: camera[0]: 200 degrees is outside -180..180"),
    "env_camera_shape": ("good", jsonl_bytes([{"forward": 1, "camera": [1]}] * N), {},
                         f"{JSONL}:1: camera: a list [1], expected [pitch, yaw] in degrees"),
    "env_button_2": ("good", jsonl_bytes([{"forward": 2}] * N), {}, f"{JSONL}:1: forward: the number 2, expected 0 or 1"),
    # --- HTTP answers and bodies that are not the file (checked before a download is accepted)
    "jsonl_xml_200": ("good", XML_ERROR, {}, "{url}/data/jsonl_xml_200.jsonl answered with something else: first line "
                      "is not JSON (starts with b'<?xml version=\"1.0\" enco'); the body was deleted "
                      "({cache}/data_jsonl_xml_200/actions.jsonl.part), a re-run downloads it again"),
    "jsonl_empty_200": ("good", b"", {}, "{url}/data/jsonl_empty_200.jsonl answered with something else: empty file; the "
                        "body was deleted ({cache}/data_jsonl_empty_200/actions.jsonl.part), a re-run downloads it again"),
    "video_xml_200": (XML_ERROR, _lines(), {}, "{url}/data/video_xml_200.mp4 answered with something else: not an MP4 "
                      "file (it starts with b'<?xml versio', not an ftyp box); the body was deleted "
                      "({cache}/data_video_xml_200/video.mp4.part), a re-run downloads it again"),
    "video_html_200": (HTML_ERROR, _lines(), {}, "{url}/data/video_html_200.mp4 answered with something else: not an MP4 "
                       "file (it starts with b'<!DOCTYPE ht', not an ftyp box); the body was deleted "
                       "({cache}/data_video_html_200/video.mp4.part), a re-run downloads it again"),
    "video_garbage": (b"\x00not an mp4" * 1000, _lines(), {}, "{url}/data/video_garbage.mp4 answered with something "
                      "else: not an MP4 file (it starts with b'\\x00not an mp4\\x00', not an ftyp box); the body was "
                      "deleted ({cache}/data_video_garbage/video.mp4.part), a re-run downloads it again"),
    "video_short_body": ("truncated", _lines(), {}, Pattern(r"{url}/data/video_short_body\.mp4 answered with something "
                         r"else: truncated: box 'mdat' ends at byte \d+, the file has \d+; the body was deleted "
                         r"\({cache}/data_video_short_body/video\.mp4\.part\), a re-run downloads it again")),
    "http_404": (None, _lines(), {}, "HTTP 404 Not Found for {url}/data/http_404.mp4"),
    "http_500": ("good", _lines(), {"status": 500},
                 "giving up on {url}/data/http_500.mp4 after 1 attempts without progress: HTTP 500 Internal Server Error"),
    "http_dropped": ("good", _lines(), {"cut_always": 0}, Pattern(r"giving up on {url}/data/http_dropped\.mp4 after 1 "
                     r"attempts without progress: connection closed at byte 0 of \d+")),
    "http_stalled": ("good", _lines(), {"stall_s": 3.0}, Pattern(r"giving up on {url}/data/http_stalled\.mp4 after 1 "
                     r"attempts without progress: transfer interrupted at byte 0: .*timed out.*")),
    # --- videos
    "video_zero_frames": ("zero", _lines(), {}, "{video}: no video stream (file corrupt or not a video)"),
    "video_2fps": ("fps2", _lines(), {}, "{video}: 2 fps is outside 5..240 (a broken header?); re-encode it at its "
                   "real frame rate"),
    "video_odd_size": ("odd", _lines(), {}, "OK"),  # brought to 640x360
    "video_30fps": ("fps30", _lines(n=N * 3 // 2), {}, "OK"),  # resampled to 20 fps: N frames
    "good": ("good", _lines(), {}, "OK"),
}
REFUSED_RELPATHS = ["../escape", "/etc/passwd", "http://evil.example/x", "data/../../up", "data\\win", 5]
EXPECTED_REFUSED = [
    "REFUSED index entry: relpath '../escape' escapes the index's basedir: refused",
    "REFUSED index entry: relpath '/etc/passwd' is absolute or names a host: refused",
    "REFUSED index entry: relpath 'http://evil.example/x' is absolute or names a host: refused",
    "REFUSED index entry: relpath 'data/../../up' escapes the index's basedir: refused",
    "REFUSED index entry: bad relpath 'data\\\\win'",
    "REFUSED index entry: bad relpath 5",
]


def _serve(state, media: dict[str, bytes], cases: dict[str, tuple]) -> None:
    for name, (video, jsonl, tweaks, _) in cases.items():
        body = media[video] if isinstance(video, str) else video
        if body is not None:
            state.files[f"/data/{name}.mp4"] = body
        state.files[f"/data/{name}.jsonl"] = jsonl
        for tweak, value in tweaks.items():
            getattr(state, tweak)[f"/data/{name}.mp4"] = value


def _run(tmp_path: Path, url: str) -> int:
    return convert_from_contractor.main([
        "--index", f"{url}/index.json", "--output_dir", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache"),
        "--num_episodes", "-1", "--demo_random_mineclip", "--min_timesteps", "16", "--device", "cpu", "--jobs", "1",
        "--retries", "0", "--download_timeout_s", "0.5", "--download_workers", "4"])


def _fingerprint(episode: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(episode.iterdir())}


@pytest.mark.slow  # ~45 small conversions: one table run, then the fixed re-run
def test_every_malformed_recording_fails_alone_with_its_line_and_a_fixed_rerun_completes(tmp_path, media, capsys):
    assert len(CASES) - 3 + len(REFUSED_RELPATHS) >= 40  # malformed recordings and index entries
    with serve() as (url, state):
        # An episode converted earlier: nothing in the later runs may touch it.
        _serve(state, media, {"previous": CASES["good"]})
        state.files["/index.json"] = json.dumps({"basedir": url + "/", "relpaths": ["data/previous"]}).encode()
        assert _run(tmp_path, url) == 0
        before = _fingerprint(tmp_path / "out" / "data_previous")

        state.files.clear()
        _serve(state, media, CASES)
        relpaths = ["data/previous", *(f"data/{name}" for name in CASES), *REFUSED_RELPATHS]
        state.files["/index.json"] = json.dumps({"basedir": url + "/", "relpaths": relpaths}).encode()
        shutil.rmtree(tmp_path / "cache" / "indexes")  # the first run cached the one-entry index
        capsys.readouterr()
        assert _run(tmp_path, url) == 1
        out = capsys.readouterr().out.splitlines()

        cache = tmp_path / "cache"
        outcomes = {}
        for line in out:
            match = re.match(r"^(OK|FAIL|SKIP) +data_(\w+): (.*)$", line)
            if match:
                outcomes[match.group(2)] = (match.group(1), match.group(3))
        assert set(outcomes) == set(CASES), sorted(set(CASES) ^ set(outcomes))
        for name, (_, _, _, expected) in CASES.items():
            status, message = outcomes[name]
            if expected == "OK":
                assert status == "OK", (name, message)
                continue
            values = {"{url}": url, "{cache}": str(cache), JSONL: str(cache / f"data_{name}" / "actions.jsonl"),
                      "{video}": str(cache / f"data_{name}" / "video.mp4")}
            pattern = str(expected)
            for placeholder, value in values.items():
                pattern = pattern.replace(placeholder, re.escape(value) if isinstance(expected, Pattern) else value)
            assert status == "FAIL", (name, message)
            assert re.fullmatch(pattern, message) if isinstance(expected, Pattern) else message == pattern, (name, message, pattern)
        assert [line for line in out if line.startswith("REFUSED")] == EXPECTED_REFUSED
        failed = sum(expected != "OK" for *_, expected in CASES.values())
        assert out[-1] == f"Done: 3 converted ({N + N + N} frames), 0 skipped, {failed} failed (re-run to retry failures)"
        episodes = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
        assert episodes == ["data_good", "data_previous", "data_video_30fps", "data_video_odd_size"]
        assert _fingerprint(tmp_path / "out" / "data_previous") == before
        # Nothing bad stays in the cache for a re-run to trust: no complete file of any recording is left.
        assert not [p for p in cache.glob("data_*/*") if not p.name.endswith(".part")]

        # Fix every input; the re-run converts all of them and still leaves the earlier episode alone.
        state.files.clear()
        state.status.clear(), state.cut_always.clear(), state.stall_s.clear()
        fixed = {name: ("good", _lines(), {}, "OK") for name in CASES}
        _serve(state, media, fixed)
        state.files["/index.json"] = json.dumps({"basedir": url + "/", "relpaths": relpaths}).encode()
        capsys.readouterr()
        assert _run(tmp_path, url) == 0
        assert capsys.readouterr().out.splitlines()[-1] == f"Done: {failed} converted ({failed * N} frames), 0 skipped, 0 failed"
    episodes = [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]
    assert len(episodes) == len(CASES) + 1 and all(validate_episode(p, decode_frames=False).ok for p in episodes)
    assert _fingerprint(tmp_path / "out" / "data_previous") == before


# ---------------------------------------------------------------------------------------------
# Indexes: every error is one line; the run goes on with the next index.


INDEX_CASES = {
    "truncated JSON": (b'{"basedir": "data/", "relpaths": ["a", "b"', "{path}: not a JSON index (Expecting ',' delimiter: "
                       "line 1 column 43 (char 42))"),
    "relpaths a string": (b'{"basedir": "data/", "relpaths": "a.mp4"}', '{path}: relpaths is str, expected {"basedir": '
                          '<folder or URL>, "relpaths": [<path>, ...]}'),
    "relpaths missing": (b'{"basedir": "data/"}', '{path}: relpaths is missing, expected {"basedir": <folder or URL>, '
                         '"relpaths": [<path>, ...]}'),
    "basedir missing": (b'{"relpaths": []}', '{path}: basedir is null, expected {"basedir": <folder or URL>, "relpaths": '
                        '[<path>, ...]}'),
    "a list": (b'[1, 2]', '{path}: the index is a list, expected {"basedir": <folder or URL>, "relpaths": [<path>, ...]}'),
    "not UTF-8": (b'\xff\xfe\x00garbage', "{path}: not a JSON index ("),
    "basedir not there": (b'{"basedir": "nowhere", "relpaths": ["rec"]}', "{path}: basedir 'nowhere' is not a folder "
                          "({dir}/nowhere; a relative basedir is relative to the index file's folder); fix basedir in the "
                          "index, or put the recordings there"),
}


@pytest.mark.parametrize("case", list(INDEX_CASES))
def test_a_broken_local_index_is_one_line_and_the_next_index_still_converts(tmp_path, case, capsys):
    body, expected = INDEX_CASES[case]
    bad = tmp_path / "bad.json"
    bad.write_bytes(body)
    src = tmp_path / "src"
    write_index_video(src / "rec.mp4", N)
    (src / "rec.jsonl").write_bytes(_lines())
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"basedir": "src", "relpaths": ["rec"]}))  # relative to the index file
    code = cli.run_main("1_generate_dataset.sh", lambda: generate_dataset.main([
        "--indexes", f"{bad} {good}", "--output_dir", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache"),
        "--demo_random_mineclip", "--device", "cpu", "--jobs", "1", "--min_timesteps", "16", "--num_episodes", "-1"]))
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    fails = [line for line in out if line.startswith("FAIL")]
    assert len(fails) == 1 and fails[0].startswith("FAIL index " + expected.replace("{path}", str(bad)).replace("{dir}", str(tmp_path)))
    assert (tmp_path / "out" / "rec").is_dir()
    bad.write_text(json.dumps({"basedir": "src", "relpaths": ["rec"]}))  # fixed: the re-run completes
    assert generate_dataset.main(["--indexes", f"{bad} {good}", "--output_dir", str(tmp_path / "out"),
                                  "--cache_dir", str(tmp_path / "cache"), "--demo_random_mineclip", "--device", "cpu",
                                  "--jobs", "1", "--min_timesteps", "16", "--num_episodes", "-1"]) == 0


# a recording of a local index -> (the file that is missing, its suffix)
MISSING_LOCAL_FILES = {"video missing": ".mp4", "actions missing": ".jsonl"}


@pytest.mark.parametrize("case", list(MISSING_LOCAL_FILES))
def test_a_missing_file_of_a_local_index_fails_alone_in_one_line(tmp_path, case, capsys):
    src = tmp_path / "src"
    write_index_video(src / "rec.mp4", N)
    (src / "rec.jsonl").write_bytes(_lines())
    write_index_video(src / "gone.mp4", N)
    (src / "gone.jsonl").write_bytes(_lines())
    missing = src / f"gone{MISSING_LOCAL_FILES[case]}"
    missing.unlink()
    (tmp_path / "index.json").write_text(json.dumps({"basedir": "src", "relpaths": ["gone", "rec"]}))
    assert generate_dataset.main(["--indexes", str(tmp_path / "index.json"), "--output_dir", str(tmp_path / "out"),
                                  "--cache_dir", str(tmp_path / "cache"), "--demo_random_mineclip", "--device", "cpu",
                                  "--jobs", "1", "--min_timesteps", "16", "--num_episodes", "-1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("FAIL")] == [
        f"FAIL gone: {missing}: not found (the index lists gone); put the recording there, or fix the index's basedir "
        "or relpaths"]
    assert (tmp_path / "out" / "rec").is_dir() and not (tmp_path / "out" / "gone").exists()


@pytest.mark.parametrize("answer, expected", [
    ({"status": 404}, "FAIL index {url}/index.json: HTTP 404 Not Found for {url}/index.json"),
    ({"status": 500}, "FAIL index {url}/index.json: giving up on {url}/index.json after 1 "
                      "attempts without progress: HTTP 500 Internal Server Error"),
    ({"body": XML_ERROR}, "FAIL index {url}/index.json: {url}/index.json answered with something "
                          "else: not JSON (Expecting value: line 1 column 1 (char 0)); the body was deleted "
                          "({cache}/indexes/index.json.part), a re-run downloads it again"),
])
def test_an_index_url_that_fails_is_one_line_and_a_rerun_downloads_it_again(tmp_path, answer, expected, capsys):
    with serve() as (url, state):
        if "status" in answer:
            state.status["/index.json"] = answer["status"]
        else:
            state.files["/index.json"] = answer["body"]
        argv = ["--index", f"{url}/index.json", "--output_dir", str(tmp_path / "out"), "--cache_dir",
                str(tmp_path / "cache"), "--demo_random_mineclip", "--device", "cpu", "--jobs", "1", "--retries", "0"]
        assert convert_from_contractor.main(argv) == 1
        out = capsys.readouterr().out.splitlines()
        assert out[0] == expected.format(url=url, cache=tmp_path / "cache")
        assert out[-1] == "Done: 0 converted (0 frames), 0 skipped, 1 failed (re-run to retry failures)"
        assert not (tmp_path / "cache" / "indexes" / "index.json").exists()
        state.status.clear()
        state.files["/index.json"] = json.dumps({"basedir": url + "/", "relpaths": []}).encode()
        assert convert_from_contractor.main(argv) == 0


# ---------------------------------------------------------------------------------------------
# Settings: one line on stderr, exit status 2, nothing written.


ARGUMENT_CASES = [
    (["--num_workers", "0"], "argument --num_workers: 0 is out of range: must be >= 1 (see --help)"),
    (["--mineclip_batch_size", "0"], "argument --mineclip_batch_size: 0 is out of range: must be >= 1 (see --help)"),
    (["--jobs", "0"], "argument --jobs: 0 is out of range: must be >= 1 (see --help)"),
    (["--num_episodes", "-2"], "argument --num_episodes: -2 is out of range: must be >= 0 or -1 (see --help)"),
    (["--download_timeout_s", "0"], "argument --download_timeout_s: 0 is out of range: must be > 0 (see --help)"),
    (["--retries", "-1"], "argument --retries: -1 is out of range: must be >= 0 (see --help)"),
    (["--worker_id", "2", "--num_workers", "2"], "--worker_id 2: must be below --num_workers 2; use 0..1"),
    (["--batch_size", "64"], "--batch_size 64: was renamed to --mineclip_batch_size (it means MineCLIP frames per "
                             "forward); use --mineclip_batch_size"),
    (["--truncate_camera"], "--truncate_camera: was renamed to --camera_labels (truncation is the default now "
                            "(--camera_labels truncated)); use --camera_labels"),
    (["--camera_labels", "degrees"], "argument --camera_labels: invalid choice: 'degrees' (choose from truncated, "
                                     "float) (see --help)"),
    (["--null_filter", "agents"], "argument --null_filter: invalid choice: 'agents' (choose from env, agent, none) "
                                  "(see --help)"),
    (["--mineclip_weights", "{tmp}/missing.pth", "--no_demo"], "--mineclip_weights {tmp}/missing.pth: not found; download "
                                                                "attn.pth with download_weights.sh, or pass "
                                                                "--demo_random_mineclip for a pipeline demo"),
    (["--index", "{tmp}/nope.json"], "--index {tmp}/nope.json: is neither a known version (6.x, 7.x, 8.x, 9.x, 10.x, "
                                     "basalt-find-cave, basalt-waterfall, basalt-pen-animals, basalt-build-house), an "
                                     "http(s) URL, nor an existing file; give a version such as 10.x, an index URL or a path"),
]


@pytest.mark.parametrize("extra, expected", ARGUMENT_CASES, ids=[" ".join(a) for a, _ in ARGUMENT_CASES])
def test_a_bad_setting_is_refused_in_one_line_before_any_work(tmp_path, extra, expected, capsys):
    extra = [a.format(tmp=tmp_path) for a in extra]
    demo = [] if "--no_demo" in extra else ["--demo_random_mineclip"]
    extra = [a for a in extra if a != "--no_demo"]
    argv = ["--index", "10.x", "--output_dir", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache"), *demo, *extra]
    with pytest.raises(SystemExit) as exit_info:
        cli.run_main("convert_from_contractor.py", lambda: convert_from_contractor.main(argv))
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.out == ""
    assert captured.err.replace("'degrees' (choose from 'truncated', 'float')", "'degrees' (choose from truncated, float)") \
        .replace("'agents' (choose from 'env', 'agent', 'none')", "'agents' (choose from env, agent, none)") \
        == f"convert_from_contractor.py: {expected.format(tmp=tmp_path)}\n"
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("variable, value, expected", [
    ("BATCH_SIZE", "64", "BATCH_SIZE=64: this setting is now MINECLIP_BATCH_SIZE (frames per MineCLIP forward; BATCH_SIZE "
                         "is the training batch in step 3); unset BATCH_SIZE and set MINECLIP_BATCH_SIZE instead"),
])
def test_an_old_variable_name_in_the_environment_is_refused(tmp_path, monkeypatch, capsys, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_info:
        cli.run_main("1_generate_dataset.sh", lambda: generate_dataset.main(
            ["--indexes", "", "--output_dir", str(tmp_path / "out"), "--demo_random_mineclip"]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"1_generate_dataset.sh: {expected}\n"
    assert not (tmp_path / "out").exists()


def test_mineclip_that_cannot_load_stops_the_run_in_one_line(tmp_path, capsys):
    weights = tmp_path / "attn.pth"
    weights.write_bytes(b"not a checkpoint")
    src = tmp_path / "src"
    write_index_video(src / "rec.mp4", N)
    (src / "rec.jsonl").write_bytes(_lines())
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"basedir": "src", "relpaths": ["rec"]}))
    assert convert_from_contractor.main(["--index", str(index), "--output_dir", str(tmp_path / "out"), "--cache_dir",
                                         str(tmp_path / "cache"), "--mineclip_weights", str(weights), "--device", "cpu",
                                         "--jobs", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith(f"FAIL cannot load MineCLIP from {weights}: ") and len(out[-1].splitlines()) == 1
    assert not (tmp_path / "out" / "rec").exists()


# ---------------------------------------------------------------------------------------------
# Episodes: --validate names the episode, the file and the row.


def _damage_actions(path: Path, **arrays) -> None:
    with np.load(path / ACTIONS_FILE) as archive:
        data = {name: archive[name] for name in archive.files}
    for name, (row, value) in arrays.items():
        data[name][row] = value
    np.savez(path / ACTIONS_FILE, **data)


def _damage_embeds(path: Path, row: int, value: float) -> None:
    embeds = np.load(path / EMBEDS_FILE)
    embeds[row] = value
    np.save(path / EMBEDS_FILE, embeds)


EPISODE_CASES = {
    "NaN embedding past row 14": (lambda p: _damage_embeds(p, 17, np.nan),
                                  "mineclip_embeds.npy: 1 row(s) from frame 15 on are not finite (NaN/inf), first at frame 17"),
    "inf embedding": (lambda p: _damage_embeds(p, 30, np.inf),
                      "mineclip_embeds.npy: 1 row(s) from frame 15 on are not finite (NaN/inf), first at frame 30"),
    "camera outside the action space": (lambda p: _damage_actions(p, env_camera=(4, [0.0, 200.0])),
                                        "actions.npz: env_camera [0.0, 200.0] degrees at frame 4 is outside the action "
                                        "space's -180..180"),
    "button value 2": (lambda p: _damage_actions(p, env_buttons=(6, np.eye(23, dtype=np.uint8)[2] * 2)),
                       "actions.npz: env_buttons has values other than 0/1 (first at frame 6: forward = 2)"),
}


@pytest.mark.parametrize("case", list(EPISODE_CASES))
def test_validate_names_episode_file_and_row(tmp_path, case):
    episode = tmp_path / "dataset" / "episode_a"
    write_episode(episode, n=40)
    damage, expected = EPISODE_CASES[case]
    damage(episode)
    result = validate_episode(episode, decode_frames=False)
    assert result.line().startswith(f"FAIL {episode}: {expected}"), result.line()
    assert "\n" not in result.line()


def test_the_writer_refuses_a_camera_outside_the_action_space(tmp_path):
    from data.episode import EpisodeWriter

    writer = EpisodeWriter(tmp_path / "episode")
    with pytest.raises(ValueError, match=r"env_camera must lie within -180\.\.180 degrees"):
        writer.append_actions(np.zeros((1, 23), np.uint8), np.array([[0.0, 180.5]], np.float32))
    writer.abort()
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# An episode of the same name written by another process: kept as it is, the conversion fails with what to do.


def _episode_before_writing(out: Path, monkeypatch) -> None:
    (out / "rec").mkdir(parents=True)
    (out / "rec" / "theirs.txt").write_text("another process's episode")


def _episode_while_writing(out: Path, monkeypatch) -> None:
    from data.episode import EpisodeWriter

    set_embeds = EpisodeWriter.set_embeds

    def appear_then_set(self, embeds):
        _episode_before_writing(out, monkeypatch)
        set_embeds(self, embeds)

    monkeypatch.setattr(EpisodeWriter, "set_embeds", appear_then_set)


@pytest.mark.parametrize("appear", [_episode_before_writing, _episode_while_writing], ids=["before", "while writing"])
def test_an_episode_written_by_another_process_is_kept_and_the_message_says_what_to_do(tmp_path, monkeypatch, appear):
    from data.generation.contractor_actions import load_actions_file
    from data.generation.episode_conversion import ConversionError, ConversionOptions, convert_recording, load_goal_encoder

    video, jsonl, out = write_index_video(tmp_path / "rec.mp4", N), tmp_path / "rec.jsonl", tmp_path / "out"
    jsonl.write_bytes(_lines())
    appear(out, monkeypatch)
    encoder, _ = load_goal_encoder(None, demo_random_mineclip=True, device="cpu")
    with pytest.raises(ConversionError) as error:
        convert_recording(video, load_actions_file(jsonl), out / "rec", encoder, ConversionOptions(min_timesteps=16),
                          source={}, progress=False)
    assert str(error.value) == (f"{out / 'rec'}: an episode of this name was written by another process while this "
                                "recording converted; it is kept as it is and this conversion discarded: delete it and "
                                "re-run to convert this recording again")
    assert [p.name for p in out.iterdir()] == ["rec"]  # no temporary directory left behind
    assert [p.name for p in (out / "rec").iterdir()] == ["theirs.txt"]
    assert (out / "rec" / "theirs.txt").read_text() == "another process's episode"


# ---------------------------------------------------------------------------------------------
# One default minimum for every entrypoint, and messages that name the setting the way the user sets it.


def _too_short_and_mismatched(folder: Path) -> None:
    """`short`: 20 good frames (fewer than the default minimum); `mismatch`: 20 frames but 10 action lines."""
    for name, lines in (("short", 20), ("mismatch", 10)):
        write_index_video(folder / name / "video.mp4", 20)
        (folder / name / "actions.jsonl").write_bytes(_lines(n=lines))


def _generate(tmp: Path, *extra: str) -> int:
    return generate_dataset.main(["--indexes", "", "--custom_input_dir", str(tmp / "in"), "--custom_output_dir",
                                  str(tmp / "out"), "--demo_random_mineclip", "--device", "cpu", "--jobs", "1", *extra])


def _contractor(tmp: Path) -> int:
    (tmp / "index.json").write_text(json.dumps({"basedir": "src", "relpaths": ["short", "mismatch"]}))
    for name in ("short", "mismatch"):
        (tmp / "src").mkdir(exist_ok=True)
        shutil.copy(tmp / "in" / name / "video.mp4", tmp / "src" / f"{name}.mp4")
        shutil.copy(tmp / "in" / name / "actions.jsonl", tmp / "src" / f"{name}.jsonl")
    return convert_from_contractor.main(["--index", str(tmp / "index.json"), "--output_dir", str(tmp / "out"),
                                         "--cache_dir", str(tmp / "cache"), "--num_episodes", "-1",
                                         "--demo_random_mineclip", "--device", "cpu", "--jobs", "1"])


def _custom(tmp: Path) -> int:
    from data.generation import convert_custom_data

    return convert_custom_data.main(["--input_dir", str(tmp / "in"), "--output_dir", str(tmp / "out"),
                                     "--demo_random_mineclip", "--device", "cpu", "--jobs", "1"])


# entrypoint -> (run(tmp) -> exit status, the video the mismatch line names, how messages name the two settings)
NAMING_CASES = {
    "1_generate_dataset.sh": (lambda tmp: _generate(tmp, "--setting_names", "script"), "in", ("MIN_TIMESTEPS",
                                                                                            "MAX_LENGTH_MISMATCH")),
    "generate_dataset.py": (_generate, "in", ("--min_timesteps", "--max_length_mismatch")),
    "convert_custom_data.py": (_custom, "in", ("--min_timesteps", "--max_length_mismatch")),
    "convert_from_contractor.py": (_contractor, "src", ("--min_timesteps", "--max_length_mismatch")),
}


@pytest.mark.parametrize("case", list(NAMING_CASES))
def test_the_default_minimum_is_one_and_messages_name_the_setting_the_user_sets(tmp_path, capsys, case):
    run, folder, (minimum, mismatch) = NAMING_CASES[case]
    _too_short_and_mismatched(tmp_path / "in")
    assert run(tmp_path) == 1
    out = capsys.readouterr().out.splitlines()
    video = tmp_path / folder / ("mismatch.mp4" if folder == "src" else "mismatch/video.mp4")
    assert f"SKIP short: 20 frames after null filtering, fewer than {minimum} 1000" in out
    assert (f"FAIL mismatch: {video}: 20 video frames but 10 action lines ({mismatch} 2 allows trimming small "
            "differences)") in out
    assert not any(p.name in ("short", "mismatch") for p in (tmp_path / "out").iterdir())


# ---------------------------------------------------------------------------------------------
# 1_generate_dataset.sh passes its variables on: a bad value is the entrypoint's one-line refusal, nothing written.

SCRIPT_ROWS = {
    "IDM_BATCH_SIZE=0": ({"IDM_BATCH_SIZE": "0"}, "argument --idm_batch_size: 0 is out of range: must be >= 1 (see --help)"),
    "IDM_DTYPE=fp16": ({"IDM_DTYPE": "fp16"}, "argument --idm_dtype: invalid choice: 'fp16' (choose from bf16, fp32) "
                                              "(see --help)"),
    "MAX_LENGTH_MISMATCH=-1": ({"MAX_LENGTH_MISMATCH": "-1"}, "argument --max_length_mismatch: -1 is out of range: must "
                                                             "be >= 0 (see --help)"),
}


@pytest.mark.slow  # a whole script or process end to end: run_tests.sh --all and CI run it
@pytest.mark.parametrize("row", list(SCRIPT_ROWS))
def test_the_script_passes_its_variables_on(tmp_path, row):
    import os
    import subprocess
    import sys

    changes, expected = SCRIPT_ROWS[row]
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHON": sys.executable, "INDEXES": "", "OUTPUT_DIR": str(tmp_path / "out"),
           "CACHE_DIR": str(tmp_path / "cache"), "CUSTOM_OUTPUT_DIR": str(tmp_path / "custom"), "DEMO_RANDOM_MINECLIP": "1",
           **changes}
    result = subprocess.run(["bash", "1_generate_dataset.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.replace("'bf16', 'fp32'", "bf16, fp32") == f"1_generate_dataset.sh: {expected}\n"
    assert not list(tmp_path.iterdir())
