"""What a demo guest does: print numbered lines on its serial console and hold some memory.

Everything a guest needs is passed on the kernel command line: parameters the kernel does not know
(``VM=demo-vm1``) reach ``/init`` as environment variables, so one initramfs serves every VM.

A guest's lines look like ``demo-vm1 seq=42 uptime=21.37 held=48MiB``: ``seq`` counts from 1 at each
boot with no gap, which is what the end-to-end tests check the logs against.
"""

from __future__ import annotations

import dataclasses
import re

HOLD_STEP_MIB = 4

# /bin/sh is busybox. Only `sleep` and `dd` fork: the guest runs under TCG, where every fork is slow.
INIT_SCRIPT = """#!/bin/sh
# stats-log-collector demo guest: a numbered line every $PERIOD seconds on the console (ttyS0),
# and $HOLD_MB MiB of RAM filled 4 MiB at a time, kept until power-off.
/bin/busybox --install -s /bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t tmpfs -o mode=0700 tmpfs /tmp
(
    i=0
    while [ $((i * 4)) -lt "${HOLD_MB:-0}" ]; do
        dd if=/dev/zero of=/tmp/hold.$i bs=1M count=4 2>/dev/null
        i=$((i + 1))
        sleep 0.5
    done
) &
n=0
while :; do
    n=$((n + 1))
    read -r up _ < /proc/uptime
    set -- /tmp/hold.*
    [ -e "$1" ] && held=$(($# * 4)) || held=0
    echo "${VM:-guest} seq=$n uptime=$up held=${held}MiB"
    sleep "${PERIOD:-1}"
done
"""

# Rates and memory of the first guests; more guests cycle through them. The boot itself leaves QEMU
# with ~220 MiB resident, part of it guest RAM the kernel touched and freed, which a guest's first tens
# of MiB reuse: the amounts held are large enough to show on the chart.
_PROFILES = ((0.5, 32), (1.0, 128), (2.0, 256))
_LINE = re.compile(r"^(?P<vm>\S+) seq=(?P<seq>\d+) uptime=\S+ held=(?P<held>\d+)MiB$")


@dataclasses.dataclass(frozen=True)
class GuestSpec:
    name: str
    period_s: float  # seconds between console lines
    hold_mib: int  # RAM the guest fills and keeps
    memory_mib: int  # the VM's RAM (QEMU -m)

    def kernel_args(self) -> str:
        """The guest's part of the kernel command line (read by /init as environment variables)."""
        return f"VM={self.name} PERIOD={self.period_s:g} HOLD_MB={self.hold_mib}"


def demo_guests(count: int, prefix: str = "demo-vm") -> list[GuestSpec]:
    """``count`` guests: a line every 0.5 s holding 32 MiB, every 1 s holding 128, every 2 s holding 256..."""
    guests = []
    for index in range(count):
        period, hold = _PROFILES[index % len(_PROFILES)]
        # 128 MiB is about the least this kernel boots in comfortably; the held RAM comes on top.
        guests.append(GuestSpec(f"{prefix}{index + 1}", period, hold, 128 + hold))
    return guests


@dataclasses.dataclass(frozen=True)
class GuestLine:
    vm: str
    seq: int
    held_mib: int


def parse_guest_line(line: str) -> GuestLine | None:
    """A guest's own console line (without its newline); None for anything else (kernel, firmware)."""
    match = _LINE.match(line)
    if match is None:
        return None
    return GuestLine(match["vm"], int(match["seq"]), int(match["held"]))
