"""The relay's frame bookkeeping: where frames end in a byte stream cut anywhere, and
the frames orun writes itself."""

from __future__ import annotations

import os

import pytest

from orun.proxy.websocket import FrameTracker, accept_key, close_frame, frame_head
from tests.wsraw import frame


def unmask_close(data: bytes) -> tuple[int, str]:
    """Code and reason of one close frame, masked or not."""
    size, length, opcode = frame_head(data)
    assert opcode == 0x8 and size + length == len(data)
    payload = data[size:]
    if data[1] & 0x80:
        mask = data[2:6]
        payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return int.from_bytes(payload[:2], "big"), payload[2:].decode()


STREAM = b"".join([
    frame(0x1, b"hello", masked=True),
    frame(0x2, b"\x00" * 300, fin=False),          # 16-bit length, first fragment
    frame(0x9, b"ping in between"),                 # a control frame between fragments
    frame(0x0, os.urandom(70_000), masked=True),    # 64-bit length continuation
    frame(0x1, b""),                                # empty payload
])


def feed(tracker: FrameTracker, data: bytes, cuts: list[int]) -> bytes:
    """Feed `data` cut at `cuts`; return what the tracker let pass."""
    out, start = [], 0
    for end in [*cuts, len(data)]:
        chunk = data[start:end]
        out.append(chunk[:tracker.passable(chunk)])
        start = end
    return b"".join(out)


@pytest.mark.parametrize("cuts", [
    [], [1], [2, 3, 4, 5], [7, 8, 9, 10, 11, 12, 13], [311, 312, 313, 320],
    list(range(1, 400)), [len(STREAM) - 1],
])
def test_everything_passes_however_the_stream_is_cut(cuts):
    tracker = FrameTracker()
    assert feed(tracker, STREAM, cuts) == STREAM
    assert tracker.at_boundary and not tracker.done


@pytest.mark.parametrize("step", [1, 2, 3, 5, 13, 64, 1000])
def test_nothing_passes_after_a_close_frame(step):
    close = close_frame(4001, "bye", masked=True)
    data = frame(0x1, b"before", masked=True) + close + frame(0x1, b"after", masked=True)
    tracker = FrameTracker()
    passed = feed(tracker, data, list(range(step, len(data), step)))
    assert passed == data[:len(data) - len(frame(0x1, b"after", masked=True))]
    assert tracker.done
    assert tracker.passable(b"more") == 0


def test_stop_cuts_at_the_next_frame_boundary():
    first, second = frame(0x2, b"a" * 1000), frame(0x1, b"next")
    tracker = FrameTracker()
    assert tracker.passable(first[:500]) == 500
    tracker.stop = True
    assert not tracker.at_boundary
    # the rest of the current frame passes, the next frame does not
    assert tracker.passable(first[500:] + second) == len(first) - 500
    assert tracker.done and tracker.at_boundary


def test_stop_at_a_boundary_passes_nothing_more():
    tracker = FrameTracker()
    assert tracker.passable(frame(0x1, b"x")) == 3
    tracker.stop = True
    assert tracker.passable(frame(0x1, b"y")) == 0
    assert tracker.done


def test_a_header_cut_in_the_middle_is_not_a_boundary():
    data = frame(0x2, b"b" * 70_000)  # 10-byte header
    tracker = FrameTracker()
    assert tracker.passable(data[:5]) == 5
    assert not tracker.at_boundary
    tracker.stop = True
    assert tracker.passable(data[5:]) == len(data) - 5
    assert tracker.done


def test_frame_head_reads_all_length_forms():
    assert frame_head(frame(0x1, b"abc")) == (2, 3, 0x1)
    assert frame_head(frame(0x2, b"a" * 300, masked=True)) == (8, 300, 0x2)
    assert frame_head(frame(0x2, b"a" * 70_000)) == (10, 70_000, 0x2)
    assert frame_head(frame(0x2, b"a" * 300)[:3]) == (0, 0, 0)
    assert frame_head(b"\x81") == (0, 0, 0)


def test_close_frames_orun_writes():
    assert unmask_close(close_frame(1001, "server shutting down", masked=False)) == \
        (1001, "server shutting down")
    masked = close_frame(1011, "upstream went away", masked=True)
    assert masked[1] & 0x80
    assert unmask_close(masked) == (1011, "upstream went away")
    # a long reason is cut to fit 125 bytes, never inside a character
    code, reason = unmask_close(close_frame(1000, "é" * 100, masked=True))
    assert code == 1000 and reason == "é" * 61


def test_accept_key_is_rfc6455s_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
