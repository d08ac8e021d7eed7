"""The demo: real QEMU VMs on one machine, no cluster, watched by virtlet-log and memstat.

The parts are reusable on their own: ``initramfs`` writes a bootable busybox initramfs (pure cpio writer),
``guest`` describes what each demo guest does, ``qemu`` builds QEMU's command line and runs a VM,
``kernel`` finds a kernel to boot, ``host`` knows which Debian packages are needed, ``layout`` says where
everything goes, ``children`` runs the components as processes, ``processes`` finds what a killed run
left by its pidfiles, and ``command`` wires them into ``stats-log-collector demo``.
"""
