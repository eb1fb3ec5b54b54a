"""HTTP downloads (resume, retries, checks, atomic placement) and the weights downloader, on 127.0.0.1."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import numpy as np
import pytest

from data import weights_download
from data import http_download
from data.http_download import DownloadError, download_file, part_path
from data.video_io import mp4_structure_problem
from local_http import serve

REPO_ROOT = Path(__file__).resolve().parents[1]
FILE_BYTES = 300_000
CUT_AT = 100_000


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 with a random port; yields (base_url, state)."""
    with serve() as running:
        yield running


def _random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _get(url: str, dest: Path, **kwargs) -> Path:
    return download_file(url, dest, progress=False, backoff_s=0.0, **kwargs)


def test_download_places_the_file(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = body = _random_bytes(FILE_BYTES)
    dest = _get(f"{base}/a.bin", tmp_path / "x" / "a.bin", expected_size=FILE_BYTES, expected_md5=_md5(body))
    assert dest.read_bytes() == body
    assert not part_path(dest).exists()


def test_cut_download_resumes_with_range(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = body = _random_bytes(FILE_BYTES)
    state.cut_once["/a.bin"] = CUT_AT
    dest = _get(f"{base}/a.bin", tmp_path / "a.bin", expected_md5=_md5(body))
    assert _md5(dest.read_bytes()) == _md5(body)
    assert state.requests == [("/a.bin", None), ("/a.bin", f"bytes={CUT_AT}-")]


def test_existing_part_file_is_resumed(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = body = _random_bytes(FILE_BYTES)
    dest = tmp_path / "a.bin"
    part_path(dest).write_bytes(body[:CUT_AT])
    _get(f"{base}/a.bin", dest, expected_md5=_md5(body))
    assert dest.read_bytes() == body
    assert state.requests == [("/a.bin", f"bytes={CUT_AT}-")]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = body = _random_bytes(FILE_BYTES)
    state.cut_once["/a.bin"] = CUT_AT
    state.ignore_range = True
    dest = _get(f"{base}/a.bin", tmp_path / "a.bin", expected_md5=_md5(body))
    assert dest.read_bytes() == body  # not the first CUT_AT bytes twice


def test_complete_part_file_is_finished_without_refetching(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = body = _random_bytes(FILE_BYTES)
    dest = tmp_path / "a.bin"
    part_path(dest).write_bytes(body)
    _get(f"{base}/a.bin", dest)  # the server answers 416 with the total: nothing is missing
    assert dest.read_bytes() == body
    assert state.requests == [("/a.bin", f"bytes={FILE_BYTES}-")]


def test_wrong_md5_fails_and_leaves_no_file(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = _random_bytes(FILE_BYTES)
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match="md5 mismatch .* expected 0123456789abcdef0123456789abcdef"):
        _get(f"{base}/a.bin", dest, expected_md5="0123456789abcdef0123456789abcdef")
    assert not dest.exists() and not part_path(dest).exists()


def test_wrong_size_fails_and_leaves_no_file(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = _random_bytes(FILE_BYTES)
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match=f"has {FILE_BYTES} bytes, expected 12"):
        _get(f"{base}/a.bin", dest, expected_size=12)
    assert not dest.exists() and not part_path(dest).exists()


def test_complete_file_is_skipped(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = body = _random_bytes(FILE_BYTES)
    dest = _get(f"{base}/a.bin", tmp_path / "a.bin", expected_md5=_md5(body))
    state.requests.clear()
    _get(f"{base}/a.bin", dest, expected_md5=_md5(body))
    _get(f"{base}/a.bin", dest)
    assert state.requests == []


def test_a_file_with_the_wrong_md5_in_place_is_replaced(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = body = _random_bytes(FILE_BYTES)
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"stale")
    _get(f"{base}/a.bin", dest, expected_md5=_md5(body))
    assert dest.read_bytes() == body


def test_not_found_is_not_retried(server, tmp_path):
    base, state = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        _get(f"{base}/missing.bin", tmp_path / "m.bin", retries=3)
    assert len(state.requests) == 1


def test_retries_stop_when_no_progress_is_made(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = _random_bytes(FILE_BYTES)
    state.cut_always["/a.bin"] = 0
    with pytest.raises(DownloadError, match="after 3 attempts without progress"):
        _get(f"{base}/a.bin", tmp_path / "a.bin", retries=2)
    assert len(state.requests) == 3
    assert not (tmp_path / "a.bin").exists()


def test_progress_resets_the_retry_budget(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = body = _random_bytes(FILE_BYTES)
    state.cut_always["/a.bin"] = 40_000  # every response dies, but each brings new bytes
    dest = _get(f"{base}/a.bin", tmp_path / "a.bin", retries=1, expected_md5=_md5(body))
    assert dest.read_bytes() == body


def _reject_xml(path: Path) -> str | None:
    return "an XML error page" if path.read_bytes().startswith(b"<?xml") else None


def test_a_body_that_fails_the_content_check_is_deleted_named_and_fetched_again(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = b'<?xml version="1.0"?><Error><Code>ServerBusy</Code></Error>'
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError) as error:
        _get(f"{base}/a.bin", dest, check=_reject_xml)
    assert str(error.value) == (f"{base}/a.bin answered with something else: an XML error page; the body was deleted "
                                f"({part_path(dest)}), a re-run downloads it again")
    assert not dest.exists() and not part_path(dest).exists()
    state.files["/a.bin"] = body = _random_bytes(FILE_BYTES)
    assert _get(f"{base}/a.bin", dest, check=_reject_xml).read_bytes() == body  # the re-run fetches it


def test_a_poisoned_file_already_in_place_is_replaced(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = body = _random_bytes(FILE_BYTES)
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"<?xml version='1.0'?><Error/>")  # left in a cache by an older toolkit
    assert _get(f"{base}/a.bin", dest, check=_reject_xml).read_bytes() == body
    assert len(state.requests) == 1


def test_default_bounds_an_http_500_costs_seven_seconds_of_backoff(server, tmp_path, monkeypatch):
    base, state = server
    state.status["/a.bin"] = 500
    waits = []
    monkeypatch.setattr(http_download.time, "sleep", waits.append)
    with pytest.raises(DownloadError, match="after 4 attempts without progress: HTTP 500"):
        download_file(f"{base}/a.bin", tmp_path / "a.bin", progress=False)
    assert waits == [1.0, 2.0, 4.0] and len(state.requests) == 4


def test_a_stalled_server_times_out_per_attempt(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = _random_bytes(FILE_BYTES)
    state.stall_s["/a.bin"] = 5.0
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"after 2 attempts without progress: transfer interrupted at byte 0: .*timed out"):
        _get(f"{base}/a.bin", tmp_path / "a.bin", retries=1, timeout_s=0.3)
    assert time.monotonic() - started < 3.0  # 2 x 0.3 s, not the server's 5 s stall
    assert not (tmp_path / "a.bin").exists()


MP4_CASES = {
    "an XML page": (b'<?xml version="1.0"?><Error/>', "not an MP4 file (it starts with b'<?xml versio', not an ftyp box)"),
    "empty": (b"", "empty file"),
    "box past the end": (b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00\x00\x00\x01\x00mdat",
                         "truncated: box 'mdat' ends at byte 272, the file has 24"),
    "no moov": (b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00\x00\x00\x00\x08mdat", "no moov box (the recording was never finished)"),
    "stray bytes": (b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00\x00\x00", "truncated: 2 stray byte(s) after the last box"),
    "zero-size box": (b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00\x00\x00\x00\x04moov", "corrupt: box b'moov' at byte 16 has size 4"),
    "complete": (b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00\x00\x00\x00\x08moov\x00\x00\x00\x00mdat", None),
}


@pytest.mark.parametrize("case", list(MP4_CASES))
def test_mp4_structure_check(tmp_path, case):
    body, expected = MP4_CASES[case]
    (tmp_path / "v.mp4").write_bytes(body)
    assert mp4_structure_problem(tmp_path / "v.mp4") == expected


def test_download_weights_places_vpt_files(server, tmp_path, capsys):
    base, state = server
    bodies = {name: _random_bytes(1000 + i, seed=i) for i, name in
              enumerate(["2x.model", "rl-from-foundation-2x.weights", "foundation-model-2x.weights"])}
    for name, body in bodies.items():
        state.files[f"/models/{name}"] = body
    argv = ["--only", "vpt", "--base_url", f"{base}/models/", "--data_dir", str(tmp_path / "data"), "--no_progress"]
    assert weights_download.main(argv) == 0
    for name, body in bodies.items():
        assert (tmp_path / "data" / "weights" / "vpt" / name).read_bytes() == body

    state.requests.clear()
    assert weights_download.main(argv) == 0
    assert state.requests == []
    assert "already complete" in capsys.readouterr().out


def test_drive_files_without_gdown_print_manual_steps(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(weights_download, "gdown_module", lambda: None)
    argv = ["--only", "mineclip", "--data_dir", str(tmp_path / "data")]
    assert weights_download.main(argv) == 1
    out = capsys.readouterr().out
    assert "https://drive.google.com/file/d/1uaZM1ZLBz2dZWcn85rZmjP7LV6Sg5PZW/view" in out
    assert str(tmp_path / "data" / "weights" / "mineclip" / "attn.pth") in out
    assert "b5ece9198337cfd117a3bfbd921e56da" in out
    assert ".venv/bin/pip install gdown" in out


class FakeGdown:
    """Stands in for the gdown module: writes a file, or raises like a Drive quota error."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, str]] = []

    def download(self, url: str, output: str, quiet: bool = False) -> str:
        self.calls.append((url, output))
        if self.fail:
            raise RuntimeError("Too many users have viewed or downloaded this file recently")
        Path(output).write_bytes(b"weights from drive")
        return output


def test_drive_files_with_gdown_are_placed_atomically(tmp_path, monkeypatch):
    fake = FakeGdown()
    monkeypatch.setattr(weights_download, "gdown_module", lambda: fake)
    assert weights_download.main(["--only", "steve1", "--data_dir", str(tmp_path)]) == 0
    target = tmp_path / "weights" / "steve1" / "steve1_prior.pt"
    assert target.read_bytes() == b"weights from drive"
    assert fake.calls[1] == ("https://drive.google.com/uc?id=1OdX5wiybK8jALVfP5_dEo0CWm9BQbDES", str(part_path(target)))
    assert not part_path(target).exists()


def test_gdown_failure_falls_back_to_manual_steps(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(weights_download, "gdown_module", lambda: FakeGdown(fail=True))
    assert weights_download.main(["--only", "steve1", "--data_dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "Too many users" in out and "save it as" in out
    assert not (tmp_path / "weights" / "steve1" / "steve1.weights").exists()


def test_mirror_with_wrong_attn_md5_is_rejected(server, tmp_path, capsys):
    base, state = server
    state.files["/mirror/attn.pth"] = _random_bytes(5000)
    argv = ["--only", "mineclip", "--mirror_url", f"{base}/mirror", "--data_dir", str(tmp_path / "data"),
            "--no_progress"]
    assert weights_download.main(argv) == 1
    assert "md5 mismatch" in capsys.readouterr().out
    assert not (tmp_path / "data" / "weights" / "mineclip" / "attn.pth").exists()


def test_file_selection():
    names = lambda files: [f.name for f in files]  # noqa: E731
    assert names(weights_download.select_files("steve1", False)) == ["steve1.weights", "steve1_prior.pt"]
    assert "data.pkl" in names(weights_download.select_files("vpt", True))
    assert len(weights_download.select_files("all", False)) == 8
    assert names(weights_download.select_files("idm", False)) == ["4x_idm.model", "4x_idm.weights"]


def test_idm_files_come_from_vpts_idm_folder_and_sit_next_to_the_vpt_files(server, tmp_path):
    base, state = server
    bodies = {"4x_idm.model": _random_bytes(500, seed=7), "4x_idm.weights": _random_bytes(3000, seed=8)}
    for name, body in bodies.items():
        state.files[f"/idm/{name}"] = body
    argv = ["--only", "idm", "--base_url", f"{base}/models/", "--idm_base_url", f"{base}/idm/",
            "--data_dir", str(tmp_path / "data"), "--no_progress"]
    assert weights_download.main(argv) == 0
    for name, body in bodies.items():
        assert (tmp_path / "data" / "weights" / "vpt" / name).read_bytes() == body
    assert weights_download.IDM_BASE_URL == "https://openaipublic.blob.core.windows.net/minecraft-rl/idm/"


def test_shell_script_flags_exist_in_the_entrypoint():
    script = (REPO_ROOT / "download_weights.sh").read_text()
    call = script.split("data/weights_download.py", 1)[1]
    known = {s for action in weights_download.build_parser()._actions for s in action.option_strings}
    flags = set(re.findall(r"(--[a-z_]+)", call))
    assert flags and flags <= known
