"""From a Colonies funcspec to a Kubernetes Job, and from a Job's status back to a verdict.

Everything here is pure: plain dicts and Colonies models in, plain dicts and frozen
dataclasses out; no I/O, no kopf, no Kubernetes client.

- `quantity`: strict parsing and formatting of cpu and memory quantities;
- `spec`: a process's funcspec → a validated `RunSpec`, or a `SpecError` naming the field;
- `image_reference`: the OCI/Docker image reference grammar, with what is wrong in words;
- `builder`: a `RunSpec` → a `batch/v1` Job dict with deterministic name, labels and
  annotations;
- `diagnosis`: a Job and its pods → outcome, a failure `Diagnosis`, the process output;
- `statuses`: tolerant, order-independent readers of Job and pod status dicts.
"""
