"""logs-collector: every VM's virt-launcher and virt-handler logs, window after window, no gap, no duplicate.

The original stats-logs-collector's ``kubectl logs --since=1h`` loop overlapped or missed lines at every
hour; here cursors make each window start exactly where the last one ended, and a journal makes a crash
neither lose nor repeat one. The pieces and the design: docs/logs-collector.md.
"""
