"""The tailing engine: follow files into outputs through rotation and crashes, and report what happens.

* :mod:`.tailer` follows one source into one output (rotation, truncation, deletion); :mod:`.recovery`
  repairs what a crash interrupted, as :mod:`.plan` (pure) decides;
* :mod:`.checkpoint` is the record and the store interface, :mod:`.slot_store` the store on disk;
* :mod:`.fileid` and :mod:`.sources` tell which file is which; :mod:`.formats` (pure) makes the lines;
* :mod:`.output` (a kubelet log file) and :mod:`.stream` (stdout) are where lines go;
* :mod:`.observer` is how the engine reports; it does not log.

It knows nothing of the front ends (virtlet-log, console-tail): they pass plain arguments. The model and its
guarantees: docs/tailing.md.
"""
