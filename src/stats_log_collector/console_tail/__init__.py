"""console-tail: KubeVirt's guest-console-log sidecar on the tailing engine (:mod:`.command`)."""
