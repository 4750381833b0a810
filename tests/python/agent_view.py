"""The agent's side of one ring file, played from Python for the shim's tests: the mapped file, the
in-flight slot, the control word, the capture request and its futex wake (ctypes), the report region
(seqlock, 64-byte ReportHeader, JSON text) and, protocol v1.3, the arm fields, the current
attribution and the attribution table (protocol/loopwatch/attribution.h). Offsets follow layout.h.
"""
from __future__ import annotations

import ctypes
import json
import mmap
import os
import struct
import time
from dataclasses import dataclass

from loopwatch import _shim

# RingHeader offsets (layout.h).
REPORT_OFFSET, REPORT_CAPACITY = 32, 52
CLOCK_TICK_BASE, CLOCK_MONO_BASE_NS, CLOCK_NS_PER_TICK = 128, 136, 144
WATCHDOG_WAKEUPS = 360
INFLIGHT_START, INFLIGHT_NAME = 384, 392
CONTROL, CAPTURE_REQUEST = 448, 452
# v1.3 (attribution.h): the table's place, its slot count, the current attribution, the arm fields.
ATTRIBUTION_OFFSET, ATTRIBUTION_CAPACITY, ATTRIBUTION_SLOTS = 104, 112, 368
ATTRIBUTION_SEQ = 400
ATTRIBUTION = struct.Struct("<IIQIIIIIIQ")  # seq, state, start, endpoint, handler, site, wchan, samples, _, first ns
ARM = struct.Struct("<QIII")  # arm_start_ticks, sample_interval_us, sample_limit, stall_after_us
ARM_START = 456
SLOT = struct.Struct("<IIIIQQ")  # endpoint, handler, site, state, blocked_ns, samples
WRITE_POS = 512
CONTROL_VALID, CONTROL_PAUSED, CONTROL_PAUSED_BY_APP = 1 << 31, 1 << 0, 1 << 1
# ReportHeader (stall_report.h): seq, request, callback_start_ticks, name_id, text_length,
# captured_unix_ns, gil_wait_ns, stage.
REPORT_HEADER = struct.Struct("<IIQIIQQI")
STATE_ONLY, COMPLETE, FAILED = 1, 2, 3

SYS_FUTEX, FUTEX_WAKE = 202, 1
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class Report:
    seq: int
    request: int
    start: int
    name_id: int
    captured_unix_ns: int
    gil_wait_ns: int
    stage: int
    text: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.text.decode("utf-8"))  # strict: the text must be valid UTF-8


class AgentView:
    """The agent's side of one ring, from Python: the mapped file and the futex."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "r+b") as f:
            self.mm = mmap.mmap(f.fileno(), 0)
        self.report_offset = self.u64(REPORT_OFFSET)
        self.report_capacity = self.u32(REPORT_CAPACITY)
        # The address of the futex word in this mapping (the temporary ctypes view is released at once).
        self.futex_address = ctypes.addressof(ctypes.c_uint32.from_buffer(self.mm, CAPTURE_REQUEST))

    @classmethod
    def of(cls, loop) -> AgentView:
        return cls(_shim.loop_status(loop)["file"])

    def u32(self, offset: int) -> int:
        return struct.unpack_from("<I", self.mm, offset)[0]

    def u64(self, offset: int) -> int:
        return struct.unpack_from("<Q", self.mm, offset)[0]

    def inflight(self) -> tuple[int, int]:
        """(start ticks, name id), read as ReadInflight does: start, name, start again."""
        while True:
            start = self.u64(INFLIGHT_START)
            name = self.u32(INFLIGHT_NAME)
            if self.u64(INFLIGHT_START) == start:
                return start, name

    def wait_inflight(self, timeout: float = 10.0) -> tuple[int, int]:
        """The in-flight slot once a callback is in it."""
        deadline = time.monotonic() + timeout
        while self.inflight()[0] == 0:
            assert time.monotonic() < deadline, "the callback never showed up in flight"
            time.sleep(0.001)
        return self.inflight()

    def ticks_to_seconds(self, ticks: int) -> float:
        base, mono, per = struct.unpack_from("<QQd", self.mm, CLOCK_TICK_BASE)
        return (mono + (ticks - base) * per) * 1e-9

    def set_control(self, set_bits: int = 0, clear_bits: int = 0) -> None:
        value = (self.u32(CONTROL) | set_bits) & ~clear_bits
        struct.pack_into("<I", self.mm, CONTROL, value)

    def arm(self, start: int, interval_us: int = 10_000, limit: int = 1000, stall_after_us: int = 0) -> int:
        """A v1.3 arm request for the callback in flight since `start` (attribution.h)."""
        ARM.pack_into(self.mm, ARM_START, start, interval_us, limit, stall_after_us)
        return self.request_capture(keep_arm=True)

    def attribution(self) -> dict | None:
        """The current attribution (seqlock), or None before the first sample / while written."""
        seq, state, start, endpoint, handler, site, wchan, samples, _, first = ATTRIBUTION.unpack_from(
            self.mm, ATTRIBUTION_SEQ)
        if seq == 0 or seq & 1 or self.u32(ATTRIBUTION_SEQ) != seq:
            return None
        return {"start": start, "endpoint": endpoint, "handler": handler, "site": site, "wchan": wchan,
                "samples": samples, "state": chr(state) if state else "", "first_sample_mono_ns": first}

    def table(self) -> list[dict]:
        """The attribution table's published slots."""
        offset, capacity = self.u64(ATTRIBUTION_OFFSET), self.u32(ATTRIBUTION_CAPACITY)
        used = min(self.u32(ATTRIBUTION_SLOTS), capacity // SLOT.size)
        slots = []
        for i in range(used):
            endpoint, handler, site, state, blocked_ns, samples = SLOT.unpack_from(self.mm, offset + i * SLOT.size)
            slots.append({"endpoint": endpoint, "handler": handler, "site": site, "state": chr(state) if state else "",
                          "blocked_ns": blocked_ns, "samples": samples})
        return slots

    def request_capture(self, keep_arm: bool = False) -> int:
        """A capture request; a v1.2 one (a stall report at once) unless `keep_arm`."""
        if not keep_arm:
            ARM.pack_into(self.mm, ARM_START, 0, 0, 0, 0)
        request = (self.u32(CAPTURE_REQUEST) + 1) & 0xFFFFFFFF
        struct.pack_into("<I", self.mm, CAPTURE_REQUEST, request)
        woken = _libc.syscall(SYS_FUTEX, ctypes.c_void_p(self.futex_address), FUTEX_WAKE, 0x7FFFFFFF, 0, 0, 0)
        assert woken >= 0, os.strerror(ctypes.get_errno())
        return request

    def report(self) -> Report | None:
        """A stable copy of the report region (seqlock), or None while it is written or empty."""
        o = self.report_offset
        seq, request, start, name, length, captured, gil_wait, stage = REPORT_HEADER.unpack_from(self.mm, o)
        if seq == 0 or seq & 1:
            return None
        assert length <= self.report_capacity - 64
        text = bytes(self.mm[o + 64 : o + 64 + length])
        if struct.unpack_from("<I", self.mm, o)[0] != seq:
            return None
        return Report(seq, request, start, name, captured, gil_wait, stage, text)

    def wait_report(self, request: int, stages: set[int], timeout: float = 20.0, poll: float = 0.002) -> Report:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            report = self.report()
            if report is not None and report.request == request and report.stage in stages:
                return report
            time.sleep(poll)
        raise AssertionError(f"no report for request {request} in stages {stages}: last {self.report()}")

    def close(self) -> None:
        self.mm.close()


