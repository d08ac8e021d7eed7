"""memstat: the memory of every VM, sampled on a fixed schedule, kept in a CSV, served over HTTP.

A *source* (kubelet, exec or procfs: MEMSTAT_SOURCE) yields :class:`~.sample.Sample` rows on the shared
grid; the CSV store appends them atomically and the HTTP server serves them with a dashboard. The
pieces and the design: docs/memstat.md.
"""
