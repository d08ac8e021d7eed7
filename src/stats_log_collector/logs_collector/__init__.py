"""logs-collector: every VM's virt-launcher and virt-handler logs, window after window, no gap, no duplicate.

The original (a bash loop around ``kubectl logs --since=1h``) overlapped or missed lines at every hour,
copied a whole node's virt-handler log into every VM's folder and stopped at the first failing VM. Here:

* ``cursor`` (pure): where each log stream was left, and the exact boundary of the next window;
* ``handler_split`` (pure): which VM a virt-handler line is about, for a whole node's log in one pass;
* ``layout`` (pure): folder and file names; ``retention`` (pure selection, then deletion);
* ``plan`` (pure): the streams to read this run, from the API's objects and the stored cursors;
* ``store``: cursors and pending file renames, journalled so a ``kill -9`` neither loses nor repeats;
* ``writer``: gzip files written under a temporary name, fsynced, then renamed;
* ``collector``: one run (streams read concurrently, failures isolated per VM);
* ``command``: the loop (interval, SIGUSR1, ``--once``) and the optional verbosity patch.
"""
