"""What the demo guests do: distinct rates and memory, all on the kernel command line."""

from __future__ import annotations

from stats_log_collector.demo.guest import GuestLine, demo_guests, parse_guest_line


def test_guests_differ_in_rate_and_memory() -> None:
    guests = demo_guests(3)
    assert [g.name for g in guests] == ["demo-vm1", "demo-vm2", "demo-vm3"]
    assert len({g.period_s for g in guests}) == 3 and len({g.hold_mib for g in guests}) == 3
    assert all(g.memory_mib >= 128 + g.hold_mib for g in guests)  # the held RAM fits beside the kernel


def test_more_guests_cycle_through_the_profiles() -> None:
    guests = demo_guests(5)
    assert guests[3].period_s == guests[0].period_s and guests[4].name == "demo-vm5"


def test_kernel_args_are_init_environment() -> None:
    assert demo_guests(2)[1].kernel_args() == "VM=demo-vm2 PERIOD=1 HOLD_MB=128"
    assert demo_guests(1)[0].kernel_args() == "VM=demo-vm1 PERIOD=0.5 HOLD_MB=32"


def test_guest_lines_are_recognised() -> None:
    assert parse_guest_line("demo-vm1 seq=12 uptime=7.35 held=16MiB") == GuestLine("demo-vm1", 12, 16)
    assert parse_guest_line("[    0.000000] Linux version 6.1.0") is None
    assert parse_guest_line("demo-vm1 seq=12 uptime=7.35 held=16MiB trailing") is None
