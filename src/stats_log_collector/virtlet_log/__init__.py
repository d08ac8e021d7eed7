"""virtlet-log: raw VM serial consoles rewritten into the files kubelet reads, so ``kubectl logs`` shows them.

VMs run by Virtlet write their serial console verbatim to ``$VIRTLET_VM_LOG_LOCATION/<sandboxId>/<name>.log``:
bytes as the guest printed them, CRLF line ends, terminal escape codes, possibly invalid UTF-8, lines of any
length and a last line that may stay unterminated for a long time (a login prompt). kubelet, however, only
serves container logs in one of two line formats, chosen from the first line of each file: CRI text
(``<time> stdout F <raw bytes>``) or docker json-file (``{"log":...,"stream":...,"time":...}``).

This component finds every console file of a node (:mod:`.watcher`, :mod:`.paths`) and has the tailing
engine (:mod:`stats_log_collector.tail`) append each new line, in the chosen format, to the log file kubelet
reads for that container, exactly once across restarts and rotations (docs/tailing.md).
"""
