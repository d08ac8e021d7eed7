"""virtlet-log: raw VM serial consoles rewritten into the files kubelet reads, so ``kubectl logs`` shows them.

VMs run by Virtlet write their serial console verbatim to ``$VIRTLET_VM_LOG_LOCATION/<sandboxId>/<name>.log``:
bytes as the guest printed them, CRLF line ends, terminal escape codes, possibly invalid UTF-8, lines of any
length and a last line that may stay unterminated for a long time (a login prompt). kubelet, however, only
serves container logs in one of two line formats, chosen from the first line of each file (REFERENCE.md §2):
CRI text (``<time> stdout F <raw bytes>``) or docker json-file (``{"log":...,"stream":...,"time":...}``).

This component follows every console file and appends each new line, in the chosen format, to the log file
kubelet reads for that container, with a checkpoint per source so that nothing is lost or written twice across
restarts and rotations.

The work is split so that each part can be tested on its own:

* :mod:`.formats` is the pure core without any I/O: it cuts raw bytes into kubelet "pieces" (lines, CRLF
  folded, at most 16 KiB each, an idle unterminated tail emitted as a partial piece) and encodes a batch of
  pieces as CRI or JSON lines. It also tells how many input bytes are still held back, which is what makes an
  offset checkpoint safe.
* the tailing engine and the front ends (``virtlet-log``, ``console-tail``) do the file watching, reading,
  appending and checkpointing around that core.
"""
