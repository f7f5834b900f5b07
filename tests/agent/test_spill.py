"""The client's spill FIFO: order, segment cleanup, and a full disk counted instead of raising."""

from __future__ import annotations

from client.spill import SpillFifo


def test_fifo_order_across_segments(tmp_path):
    """Frames come back in push order across segment files, and read segments are deleted."""
    fifo = SpillFifo(tmp_path, "w1", segment_bytes=1000)
    frames = [bytes([i]) * (50 + i) for i in range(100)]
    for f in frames[:60]:
        assert fifo.push(f)
    out = [fifo.pop() for _ in range(30)]
    for f in frames[60:]:
        assert fifo.push(f)
    while (f := fifo.pop()) is not None:
        out.append(f)
    assert out == frames
    assert len(fifo) == 0 and fifo.nbytes == 0
    assert len(list(tmp_path.glob("*.spill"))) <= 1
    fifo.close()
    assert list(tmp_path.glob("*.spill")) == []


def test_full_disk_is_counted(tmp_path):
    """When the file cannot be written, push returns False and counts the failure."""
    fifo = SpillFifo(tmp_path / "missing" / "deeper", "w2")
    (tmp_path / "missing").write_text("a file where a directory should be")
    assert fifo.push(b"x") is False
    assert fifo.failed == 1 and len(fifo) == 0
