"""Put every pretrained file the toolkit uses where its scripts expect it (download_weights.sh).

    data/weights/vpt/2x.model, rl-from-foundation-2x.weights, foundation-model-2x.weights   (public HTTP)
    data/weights/vpt/4x_idm.model, 4x_idm.weights   (inverse dynamics model, labels videos; public HTTP)
    data/weights/mineclip/attn.pth                                                         (Google Drive)
    data/weights/steve1/steve1.weights, steve1_prior.pt                                    (Google Drive)
    data/prior_dataset/data.pkl          (optional, --with_prior_dataset; a pickle)       (Google Drive)

HTTP files are resumed, retried and verified by data.http_download. Google Drive files are fetched with
`gdown` when it is installed; otherwise the script prints the exact manual steps (URL, target, md5).
Files already in place (and matching the md5 where one is known) are skipped.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from toolkit_utils.file_hashes import file_md5
from data.http_download import DEFAULT_RETRIES, DownloadError, download_file, is_complete, part_path
from toolkit_utils import cli

VPT_BASE_URL = "https://openaipublic.blob.core.windows.net/minecraft-rl/models/"
IDM_BASE_URL = "https://openaipublic.blob.core.windows.net/minecraft-rl/idm/"  # VPT's README links the IDM there
DRIVE_DOWNLOAD_URL = "https://drive.google.com/uc?id={id}"
DRIVE_VIEW_URL = "https://drive.google.com/file/d/{id}/view"
MINECLIP_ATTN_MD5 = "b5ece9198337cfd117a3bfbd921e56da"
GROUPS = ("vpt", "mineclip", "steve1", "idm")
PRIOR_DATASET_GROUP = "prior_dataset"


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: where it goes under --data_dir and where it comes from."""

    group: str
    relpath: str  # target, relative to --data_dir
    drive_id: str | None = None  # Google Drive file id; None: fetched from --base_url/<file name>
    md5: str | None = None

    @property
    def name(self) -> str:
        """The file's name (also its name under --base_url or --mirror_url)."""
        return Path(self.relpath).name


# The Drive ids are those of the STEVE-1 authors' download_weights.sh.
REMOTE_FILES = (
    RemoteFile("vpt", "weights/vpt/2x.model"),
    RemoteFile("vpt", "weights/vpt/rl-from-foundation-2x.weights"),
    RemoteFile("vpt", "weights/vpt/foundation-model-2x.weights"),
    RemoteFile("idm", "weights/vpt/4x_idm.model"),
    RemoteFile("idm", "weights/vpt/4x_idm.weights"),
    RemoteFile("mineclip", "weights/mineclip/attn.pth", drive_id="1uaZM1ZLBz2dZWcn85rZmjP7LV6Sg5PZW", md5=MINECLIP_ATTN_MD5),
    RemoteFile("steve1", "weights/steve1/steve1.weights", drive_id="1E3fd_-H1rRZqMkUKHfiMhx-ppLLehQPI"),
    RemoteFile("steve1", "weights/steve1/steve1_prior.pt", drive_id="1OdX5wiybK8jALVfP5_dEo0CWm9BQbDES"),
    RemoteFile(PRIOR_DATASET_GROUP, "prior_dataset/data.pkl", drive_id="18JKzIwHmFBrAjfiRNobtwkN7zhwQc7IO"),
)


def build_parser() -> cli.ArgumentParser:
    """Command-line arguments."""
    p = cli.ArgumentParser(description=__doc__)
    p.add_argument("--only", choices=(*GROUPS, "all"), default="all",
                   help="which files: vpt (policy + weights), mineclip (attn.pth), steve1 (agent + prior), "
                        "idm (VPT's inverse dynamics model, labels recordings without actions), or all")
    p.add_argument("--with_prior_dataset", action="store_true",
                   help="also fetch the prior's training pairs, data/prior_dataset/data.pkl (a pickle)")
    p.add_argument("--data_dir", default="data", help="root the targets are placed under (the scripts expect data)")
    p.add_argument("--base_url", default=VPT_BASE_URL, help="where the VPT files are served (override for a mirror)")
    p.add_argument("--idm_base_url", default=IDM_BASE_URL, help="where the IDM files are served (override for a mirror)")
    p.add_argument("--mirror_url", default=None,
                   help="fetch the Google Drive files over HTTP from <mirror_url>/<file name> instead (default: Drive)")
    p.add_argument("--retries", type=int, default=DEFAULT_RETRIES,
                   help="retries of an HTTP download that makes no progress, with exponential backoff")
    p.add_argument("--no_progress", action="store_true", help="hide the progress bars")
    return p


def select_files(only: str, with_prior_dataset: bool) -> list[RemoteFile]:
    """The files of the chosen group(s), in download order."""
    groups = set(GROUPS) if only == "all" else {only}
    if with_prior_dataset:
        groups.add(PRIOR_DATASET_GROUP)
    return [f for f in REMOTE_FILES if f.group in groups]


def join_url(base_url: str, name: str) -> str:
    """base_url + '/' + name, whether or not base_url ends in a slash."""
    return base_url.rstrip("/") + "/" + name


def manual_steps(remote: RemoteFile, target: Path, reason: str) -> str:
    """Exact instructions for fetching a Google Drive file by hand."""
    lines = [
        f"{remote.name} must be fetched by hand ({reason}):",
        f"  1. open {DRIVE_VIEW_URL.format(id=remote.drive_id)} and download it",
        f"     (or: .venv/bin/pip install gdown && .venv/bin/gdown {DRIVE_DOWNLOAD_URL.format(id=remote.drive_id)} -O {target})",
        f"  2. save it as {target}",
    ]
    if remote.md5:
        lines.append(f"  3. check it: md5sum {target}  ->  {remote.md5}")
    return "\n".join(lines)


def gdown_module() -> ModuleType | None:
    """The gdown module if it is installed, else None."""
    if importlib.util.find_spec("gdown") is None:
        return None
    return importlib.import_module("gdown")


def fetch_from_drive(remote: RemoteFile, target: Path, progress: bool) -> str:
    """Fetch a Drive file with gdown into a .part file, verify, rename; returns the outcome."""
    gdown = gdown_module()
    if gdown is None:
        print(manual_steps(remote, target, "gdown is not installed; `.venv/bin/pip install gdown` lets this script do it"))
        return "manual"
    part = part_path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = gdown.download(DRIVE_DOWNLOAD_URL.format(id=remote.drive_id), str(part), quiet=not progress)
    except Exception as e:  # gdown raises its own types (quota, permission, HTML instead of file)
        result, error = None, e
    else:
        error = None
    if result is None or not part.is_file():
        part.unlink(missing_ok=True)
        print(manual_steps(remote, target, f"gdown failed: {error or 'no file was written'}"))
        return "manual"
    if remote.md5 and (actual := file_md5(part)) != remote.md5:
        part.unlink()
        print(f"error: {remote.name} from Google Drive has md5 {actual}, expected {remote.md5}; nothing was written "
              f"to {target}")
        return "failed"
    os.replace(part, target)
    return "downloaded"


def fetch(remote: RemoteFile, data_dir: Path, base_url: str, mirror_url: str | None, retries: int,
          progress: bool) -> str:
    """Put one file in place; returns 'present', 'downloaded', 'manual' or 'failed'."""
    target = data_dir / remote.relpath
    if is_complete(target, expected_md5=remote.md5):
        print(f"[skip] {target} is already complete")
        return "present"
    if remote.drive_id is not None and mirror_url is None:
        print(f"[drive] {remote.name} -> {target}")
        return fetch_from_drive(remote, target, progress)
    url = join_url(mirror_url if remote.drive_id is not None else base_url, remote.name)
    print(f"[http] {url} -> {target}")
    try:
        download_file(url, target, expected_md5=remote.md5, retries=retries, progress=progress)
    except DownloadError as e:
        print(f"error: {e}")
        return "failed"
    return "downloaded"


def main(argv: list[str] | None = None) -> int:
    """Fetch the selected files; exit status 0 only when every one of them is in place."""
    args = build_parser().parse_args(argv)
    if args.retries < 0:
        raise SystemExit(f"error: --retries must be >= 0, got {args.retries}")
    data_dir = Path(args.data_dir)
    outcomes = {}
    for remote in select_files(args.only, args.with_prior_dataset):
        base_url = args.idm_base_url if remote.group == "idm" else args.base_url
        outcomes[remote] = fetch(remote, data_dir, base_url, args.mirror_url, args.retries, not args.no_progress)
    print("\nSummary:")
    for remote, outcome in outcomes.items():
        print(f"  {outcome:>10}  {data_dir / remote.relpath}")
    missing = [r for r, o in outcomes.items() if o in ("manual", "failed")]
    if missing:
        print(f"{len(missing)} file(s) are not in place yet: see the messages above.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
