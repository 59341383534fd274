"""ColonyOS CFS for the processes' Jobs: the S3 client, the sync rules of the Go tools, and
the pull/push steps the Job's init container and sidecar run."""
