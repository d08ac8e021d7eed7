"""memstat: the memory of every VM, sampled on a fixed schedule, kept in a CSV, served over HTTP.

The original ran two ``kubectl exec`` per pod per poll and kept one ever-growing CSV. Here a *source*
(``kubelet``: the node Summary API, one request per node; ``exec``: one exec per pod reading /proc;
``procfs``: node-local /proc, no API calls for figures) yields :class:`~.sample.Sample` rows, which the
CSV store appends atomically and the HTTP server serves.
"""
