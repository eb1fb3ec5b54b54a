"""Video reading and writing for episodes: the one place that touches a video file.

Reading goes through PyAV (FFmpeg) for every file we meet: our h264 episodes, the original STEVE-1
episodes (MPEG-4 part 2 "mp4v" written by OpenCV) and raw recordings. Frames come out as RGB uint8
[H, W, 3]. Writing produces h264 (libx264, yuv420p, moov atom first) that any player opens.

Encoder settings (CRF 12, GOP 20, preset superfast, tune fastdecode, one decoder thread for random access)
were chosen by measurement; the numbers behind each choice are in BENCHMARKS.md ("Video encoding settings")
and come from benchmarks/bench_video_io.py.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import av.logging
import cv2
import numpy as np

DEFAULT_FPS = 20
# About half the error of the original's mp4v files for ~1.5x their size (BENCHMARKS.md).
DEFAULT_CRF = 12
# A keyframe every GOP frames: read_range decodes on average (GOP - 1) / 2 frames it throws away, while
# shorter GOPs grow the file. 20 = one second.
DEFAULT_GOP = 20
# Decoder threads (0: FFmpeg starts one per core). Random access to 128x128 frames is fastest on one
# thread: a frame is too little work to share, frame threading refills its pipeline after every seek,
# and data-loader workers already use the other cores. Whole-file reads of 640x360 source videos gain
# from threads.
READ_RANGE_THREADS = 1
SEQUENTIAL_THREADS = 0

# FFmpeg colour-space codes for which OpenCV's I420 -> RGB conversion (BT.601, limited range) is
# the right one: unspecified (2), BT.470BG (5), SMPTE 170M (6); range unspecified (0) or limited (1).
_BT601_COLORSPACES = (2, 5, 6)
_LIMITED_RANGES = (0, 1)


class VideoError(ValueError):
    """A video file is missing, unreadable, corrupt or truncated."""


def mp4_structure_problem(path: str | os.PathLike) -> str | None:
    """Why a file cannot be a complete MP4/QuickTime file, from its top-level boxes alone; None if it can be.

    An MP4 is a sequence of boxes (4-byte big-endian size, 4-byte type; size 1: a 64-bit size follows,
    size 0: to the end of the file), starting with `ftyp` (ISO/IEC 14496-12 section 4.2). An error page
    served in place of a video fails the first check; a cut-off download leaves its last box running past
    the end of the file; a recording whose writer died has no `moov` (the index of the frames).
    """
    path = Path(path)
    size = path.stat().st_size
    seen = []
    with open(path, "rb") as file:
        offset = 0
        while offset < size:
            file.seek(offset)
            header = file.read(16)
            if len(header) < 8:
                return f"truncated: {size - offset} stray byte(s) after the last box"
            box_size, box_type = int.from_bytes(header[:4], "big"), header[4:8]
            if not seen and box_type != b"ftyp":
                return f"not an MP4 file (it starts with {header[:12]!r}, not an ftyp box)"
            if box_size == 1:
                if len(header) < 16:
                    return "truncated inside a box header"
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:
                box_size = size - offset
            if box_size < 8:
                return f"corrupt: box {box_type!r} at byte {offset} has size {box_size}"
            if offset + box_size > size:
                return f"truncated: box {box_type.decode('latin-1')!r} ends at byte {offset + box_size}, the file has {size}"
            seen.append(box_type)
            offset += box_size
    if not seen:
        return "empty file"
    if b"moov" not in seen:
        return "no moov box (the recording was never finished)"
    return None


def _one_line(error: BaseException) -> str:
    """A short one-line reason from an FFmpeg/OS error."""
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(reason).split())


def _open_input(path: Path, threads: int) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open a video file for decoding, or raise VideoError naming the file."""
    if not path.is_file():
        raise VideoError(f"{path}: video file does not exist")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise VideoError(f"{path}: not a readable video ({_one_line(error)})") from error
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: no video stream (file corrupt or not a video)")
    stream = container.streams.video[0]
    stream.thread_type = "NONE" if threads == 1 else "AUTO"
    stream.thread_count = threads
    return container, stream


def _frame_to_rgb(frame: av.VideoFrame, out: np.ndarray | None = None) -> np.ndarray:
    """Decoded frame -> RGB uint8 [H, W, 3], written into `out` when given."""
    bt601 = getattr(frame, "colorspace", 2) in _BT601_COLORSPACES
    limited = getattr(frame, "color_range", 0) in _LIMITED_RANGES
    if frame.format.name == "yuv420p" and bt601 and limited and frame.width % 2 == 0 and frame.height % 2 == 0:
        # Our files and OpenCV's mp4v both land here. A plane copy + OpenCV's conversion is ~10x
        # faster than PyAV's swscale call and lands closer to the source (BENCHMARKS.md).
        planes = frame.to_ndarray()  # (H * 3 / 2, W) I420
        if out is None:
            return cv2.cvtColor(planes, cv2.COLOR_YUV2RGB_I420)
        cv2.cvtColor(planes, cv2.COLOR_YUV2RGB_I420, dst=out)
        return out
    rgb = frame.to_ndarray(format="rgb24")
    if out is None:
        return rgb
    out[...] = rgb
    return out


def read_video_frames(
    path: str | os.PathLike, *, threads: int = SEQUENTIAL_THREADS, check_frame_count: bool = True
) -> Iterator[np.ndarray]:
    """Yield every frame of a video in order as RGB uint8 [H, W, 3]."""
    path = Path(path)
    container, stream = _open_input(path, threads)
    count = 0
    try:
        try:
            for frame in container.decode(stream):
                yield _frame_to_rgb(frame)
                count += 1
        except av.FFmpegError as error:
            raise VideoError(f"{path}: corrupt or truncated at frame {count} ({_one_line(error)})") from error
        if check_frame_count and stream.frames and count < stream.frames:
            raise VideoError(f"{path}: truncated: decoded {count} of the {stream.frames} frames its header lists")
    finally:
        container.close()


def verify_video(path: str | os.PathLike) -> tuple[int, int, int]:
    """Decode every frame and return (num_frames, height, width); raise VideoError on any decoder error."""
    path = Path(path)
    # One thread: an FFmpeg worker thread that logs while the main thread waits for it with the
    # GIL held deadlocks PyAV's log callback (seen here on a garbled file).
    container, stream = _open_input(path, threads=1)
    sizes: set[tuple[int, int]] = set()
    count = 0
    # A garbled h264 slice does not raise: the decoder conceals it and only logs. Capturing the
    # log (process-wide, so only here and not on the training path) is the way to notice it.
    old_level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=False) as logs:
            for frame in container.decode(stream):
                sizes.add((frame.height, frame.width))
                count += 1
    except av.FFmpegError as error:
        raise VideoError(f"{path}: corrupt or truncated at frame {count} ({_one_line(error)})") from error
    finally:
        av.logging.set_level(old_level)
        container.close()
    errors = [message for level, _, message in logs if level <= av.logging.ERROR]
    if errors:
        raise VideoError(f"{path}: corrupt: decoder reported {len(errors)} error(s), first: {errors[0].strip()}")
    if stream.frames and count < stream.frames:
        raise VideoError(f"{path}: truncated: decoded {count} of the {stream.frames} frames its header lists")
    if stream.frames and count > stream.frames:
        raise VideoError(f"{path}: decoded {count} frames but its header lists {stream.frames}")
    if len(sizes) > 1:
        raise VideoError(f"{path}: frame size changes within the video: {sorted(sizes)}")
    height, width = sizes.pop() if sizes else (stream.height, stream.width)
    return count, height, width


class VideoReader:
    """Random access to the frames of a constant-frame-rate video (seek to a keyframe, decode on)."""

    def __init__(self, path: str | os.PathLike, *, threads: int = READ_RANGE_THREADS):
        self.path = Path(path)
        self._threads = threads
        self._container, self._stream = _open_input(self.path, threads)
        self._pid = os.getpid()
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate
        if not rate or not stream.time_base:
            self.close()
            raise VideoError(f"{self.path}: no frame rate or time base in the header")
        self.fps = float(rate)
        self.height = stream.height
        self.width = stream.width
        self._ticks_per_frame = 1 / (Fraction(rate) * Fraction(stream.time_base))
        self._start_pts = stream.start_time or 0
        self.num_frames = stream.frames or self._count_packets()
        self._frames: Iterator[av.VideoFrame] | None = None
        self._next_index = -1  # index the live decoder yields next; -1: must seek first

    def _count_packets(self) -> int:
        """Frame count of a container whose header has none (demux only, no decoding)."""
        count = sum(1 for packet in self._container.demux(self._stream) if packet.size)
        self._container.seek(self._start_pts, stream=self._stream, backward=True)
        return count

    def _index_of(self, frame: av.VideoFrame) -> int:
        """Frame index from a decoded frame's timestamp."""
        return round((frame.pts - self._start_pts) / self._ticks_per_frame)

    def _seek(self, index: int) -> None:
        """Position the decoder at the last keyframe at or before `index`."""
        target = self._start_pts + round(index * self._ticks_per_frame)
        try:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        except av.FFmpegError as error:
            raise VideoError(f"{self.path}: seek to frame {index} failed ({_one_line(error)})") from error
        self._frames = self._container.decode(self._stream)  # a fresh generator: no stale frames

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as RGB uint8 [stop - start, H, W, 3]."""
        if not 0 <= start <= stop <= self.num_frames:
            raise ValueError(f"{self.path}: frame range [{start}, {stop}) is outside 0..{self.num_frames}")
        out = np.empty((stop - start, self.height, self.width, 3), dtype=np.uint8)
        if stop == start:
            return out
        if self._pid != os.getpid():
            # A forked child (a data-loader worker) shares the parent's file offset: reading through
            # it would garble both processes' reads, so the child opens the file anew. The inherited
            # FFmpeg objects are kept, never freed here: tearing them down in the child can crash it.
            self._inherited = (self._container, self._stream, self._frames)
            self._container, self._stream = _open_input(self.path, self._threads)
            self._frames = None
            self._pid, self._next_index = os.getpid(), -1
        if start != self._next_index:  # a continuation of the last read needs no seek
            self._seek(start)
        self._next_index = -1  # until this read succeeds
        filled, overshoot = self._decode_into(out, start)
        if overshoot:
            # The demuxer landed after `start` (a keyframe index that lies): decode from the top.
            self._seek(0)
            filled, overshoot = self._decode_into(out, start)
        if overshoot:
            raise VideoError(f"{self.path}: frame {start} missing (the first decoded frame after it is later)")
        if filled < len(out):
            raise VideoError(
                f"{self.path}: truncated: frame {start + filled} of the {self.num_frames} in its header is missing"
            )
        self._next_index = stop
        return out

    def _decode_into(self, out: np.ndarray, start: int) -> tuple[int, bool]:
        """Decode frames start.. into `out` until it is full: (frames written, whether it began past start)."""
        filled = 0
        try:
            for frame in self._frames:
                index = self._index_of(frame)
                if index < start + filled:
                    continue  # between the keyframe and `start`
                if index != start + filled:
                    if filled == 0:
                        return 0, True
                    raise VideoError(f"{self.path}: frame {start + filled} missing (the next decoded frame is {index})")
                _frame_to_rgb(frame, out[filled])
                filled += 1
                if filled == len(out):
                    break
        except av.FFmpegError as error:
            raise VideoError(
                f"{self.path}: corrupt or truncated near frame {start + filled} ({_one_line(error)})"
            ) from error
        return filled, False

    def close(self) -> None:
        """Release the file and the decoder."""
        self._frames = None
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class VideoWriter:
    """Write RGB uint8 frames to an h264 mp4 (libx264, yuv420p, faststart) that players open."""

    def __init__(
        self,
        path: str | os.PathLike,
        fps: int = DEFAULT_FPS,
        crf: int = DEFAULT_CRF,
        gop: int = DEFAULT_GOP,
        threads: int = 0,
    ):
        """threads: x264's encoder threads (0: its default, about 1.5 per core); with 1 the bytes written do not
        depend on the machine's core count."""
        self.path = Path(path)
        self.num_frames = 0
        self._fps = fps
        self._crf = crf
        self._gop = gop
        self._closed = False
        # faststart moves the index (moov) before the data on close, so players and partial
        # downloads can start at once; a file whose writer died has no index and never opens.
        self._container = av.open(str(self.path), mode="w", options={"movflags": "+faststart"})
        self._stream = self._container.add_stream("libx264", rate=fps)
        self._stream.pix_fmt = "yuv420p"
        if threads:
            self._stream.codec_context.thread_count = threads
        self._stream.options = {
            "crf": str(crf),
            "tune": "fastdecode",
            # superfast: ~3x the encode speed of the default preset, same decode speed and error,
            # somewhat larger files (BENCHMARKS.md).
            "preset": "superfast",
            "bf": "0",  # no B-frames: decode order = display order, so a seek lands exactly
            # Fixed keyframe positions (no scene-cut keyframes) keep the cost of a seek predictable;
            # the colour tags say how to turn the pixels back into RGB (BT.601, limited range).
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:colormatrix=smpte170m:range=tv",
        }

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 [H, W, 3] frame (H and W even, the same for every frame)."""
        if self._closed:
            raise ValueError(f"{self.path}: write() after close()")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must be RGB uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        if self.num_frames == 0:
            if height % 2 or width % 2:
                raise ValueError(f"yuv420p needs an even frame size, got {height}x{width}")
            self._stream.height, self._stream.width = height, width
        elif (height, width) != (self._stream.height, self._stream.width):
            raise ValueError(
                f"frame {self.num_frames} is {height}x{width}, earlier frames are "
                f"{self._stream.height}x{self._stream.width}"
            )
        # AREA averaging for the chroma planes is measurably closer than swscale's default here.
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame = video_frame.reformat(format="yuv420p", interpolation="AREA")
        video_frame.pts = self.num_frames
        self._container.mux(self._stream.encode(video_frame))
        self.num_frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file; an empty video is an error and leaves no file."""
        if self._closed:
            return
        self._closed = True
        if self.num_frames == 0:
            self._container.close()
            self.path.unlink(missing_ok=True)
            raise ValueError(f"{self.path}: no frames were written")
        self._container.mux(self._stream.encode(None))
        self._container.close()

    def abort(self) -> None:
        """Stop writing and delete the partial file."""
        if not self._closed:
            self._closed = True
            try:
                self._container.close()
            except (av.FFmpegError, OSError):
                pass  # the file is deleted anyway
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: type | None, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
