"""The process's peak memory growth over a block, from its RSS (Linux /proc).

`with PeakRss() as peak: ...` resets the kernel's high-water mark of this process's RSS
(writing 5 to /proc/self/clear_refs), records the RSS, and after the block reads the new
high-water mark: `peak.grown_mb` is how far the resident set rose above where it stood,
including memory allocated and freed inside the block (by any thread of the process).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import TracebackType

_STATUS = Path("/proc/self/status")


def _kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB$", _STATUS.read_text(), re.MULTILINE)
    assert match, f"{field} not in /proc/self/status"
    return int(match.group(1))


class PeakRss:
    def __init__(self) -> None:
        self.start_kib = 0
        self.peak_kib = 0

    def __enter__(self) -> PeakRss:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        self.start_kib = _kib("VmRSS")
        assert _kib("VmHWM") <= self.start_kib + 1024, "the peak RSS was not reset"
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.peak_kib = _kib("VmHWM")

    @property
    def grown_mb(self) -> float:
        return (self.peak_kib - self.start_kib) / 1024
