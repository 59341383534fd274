"""What an executor's Jobs read and write besides the program: CFS storage (`spec.storage`),
the out.json sidecar (`spec.output`), and the image those helper containers run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from colonies_operator.colonies.client import ServerAddress
from colonies_operator.config.fields import ConfigError, SecretRef, seconds
from colonies_operator.config.settings import OperatorSettings
from colonies_operator.jobs import io as job_io, quantity, storage as job_storage


def helper_image(spec: Mapping[str, Any], settings: OperatorSettings, what: str) -> str:
    """The image of the helper containers of Jobs (CFS steps, the output sidecar): the
    operator's own, which has `colonies-operator cfs|output`."""
    image = str(spec.get("helperImage") or settings.image)
    if not image:
        raise ConfigError("helperImage", f"no image for {what}: set spec.helperImage or the operator's "
                                         "COLONIES_OPERATOR_IMAGE (the Helm chart sets it)")
    return image


def output(spec: Mapping[str, Any], settings: OperatorSettings) -> job_io.OutputSettings | None:
    """spec.output → the out.json sidecar's settings, or None when out.json is not read."""
    given = spec.get("output") or {}
    if not isinstance(given, Mapping):
        raise ConfigError("output", "must be an object: {file: true, maxBytes: 1Mi}")
    if not given.get("file"):
        return None
    try:
        max_bytes = quantity.parse_memory(given.get("maxBytes", "1Mi"))
    except quantity.QuantityError as exc:
        raise ConfigError("output.maxBytes", str(exc)) from None
    if not 0 < max_bytes <= 64 * 2**20:
        raise ConfigError("output.maxBytes", f"must be between 1 byte and 64Mi, got {max_bytes} bytes")
    return job_io.OutputSettings(image=helper_image(spec, settings, "the output sidecar"), max_bytes=max_bytes)


def storage(spec: Mapping[str, Any], settings: OperatorSettings, server: ServerAddress, colony: str,
             executor_key: SecretRef | None, ca_secret: SecretRef | None) -> job_storage.StorageSettings | None:
    """spec.storage → the CFS settings of the executor's Jobs, or None without storage."""
    given = spec.get("storage")
    if not given:
        return None
    if not isinstance(given, Mapping):
        raise ConfigError("storage", "must be an object: {endpoint, bucket, credentialsSecretRef}")
    for key in ("endpoint", "bucket"):
        if not given.get(key):
            raise ConfigError(f"storage.{key}", "is required")
    credentials = given.get("credentialsSecretRef") or {}
    if not isinstance(credentials, Mapping) or not credentials.get("name"):
        raise ConfigError("storage.credentialsSecretRef", "must name the Secret holding the S3 keys: "
                                                          "{name: <secret>, accessKeyKey, secretKeyKey}")
    if executor_key is None:
        raise ConfigError("executorKeySecretRef", "is required with spec.storage: the Jobs' CFS steps sign with the "
                                                  "executor's key, which only a Secret may carry (create one with "
                                                  "the private key of `colonies security generate`)")
    image = helper_image(spec, settings, "the CFS steps")
    size = given.get("volumeSize", "10Gi")
    try:
        quantity.parse_memory(size)
    except quantity.QuantityError as exc:
        raise ConfigError("storage.volumeSize", str(exc)) from None
    jobs = spec.get("server") or {}
    try:
        push_seconds = int(seconds(given, "pushSeconds", 600, 10, 86400))
    except ConfigError as exc:
        raise ConfigError("storage.pushSeconds", str(exc).split(": ", 1)[1]) from None
    return job_storage.StorageSettings(
        image=image, endpoint=str(given["endpoint"]), bucket=str(given["bucket"]),
        keys_secret=str(credentials["name"]),
        access_key_field=str(credentials.get("accessKeyKey") or "accessKey"),
        secret_key_field=str(credentials.get("secretKeyKey") or "secretKey"),
        executor_key_secret=(executor_key.name, executor_key.key),
        server_host=str(jobs.get("jobHost") or server.host), server_port=int(jobs.get("jobPort") or server.port),
        server_tls=server.tls, server_ca_secret=(ca_secret.name, ca_secret.key) if ca_secret else None,
        colony_name=colony, region=str(given.get("region") or ""), tls=bool(given.get("tls", False)),
        skip_verify=bool(given.get("insecureSkipVerify", False)), volume_size=str(size),
        push_seconds=push_seconds,
    )
