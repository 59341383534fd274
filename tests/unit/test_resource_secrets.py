"""What a ColonyExecutor's status and Events say about the Secrets it names: that a Secret is
missing, or that the named key is missing or not a valid key or CA bundle, and nothing else:
no other key names, no lengths, no values (anyone who can read the ColonyExecutor reads it)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from colonies_operator import config as cfg
from colonies_operator.runtime.resource import ExecutorResource

NAMESPACE = "jobs"
SETTINGS = cfg.OperatorSettings(server_host="colonies.example", colony_name="dev")
SECRET_VALUE = "s3cr3t-do-not-show"  # 18 characters: the number must not show either
OTHER_KEYS = {"apiToken": SECRET_VALUE, "password": "hunter2hunter2"}


class FakeKube:
    """The two calls a resource makes before it runs: read a Secret, patch its own status."""

    def __init__(self, secrets: dict[str, dict[str, str]]) -> None:
        self.secrets = secrets
        self.statuses: list[dict[str, Any]] = []

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        assert namespace == NAMESPACE
        return self.secrets.get(name)

    async def patch_executor_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)


async def not_ready(secrets: dict[str, dict[str, str]], **spec: Any) -> tuple[str, str, list[tuple[str, ...]]]:
    """Serve a resource once with these Secrets: its Ready condition's (reason, message) and its Events."""
    kube = FakeKube(secrets)
    events: list[tuple[str, ...]] = []
    resource = ExecutorResource(
        SimpleNamespace(kube=kube, settings=SETTINGS), NAMESPACE, "ex", "uid-1",
        spec=lambda: {"colonyKeySecretRef": {"name": "colony-key"}, **spec}, generation=lambda: 1,
        status={}, emit=lambda *event: events.append(event))

    async def stop_after_one_pass(seconds: float) -> bool:
        return True

    await resource.serve(stop_after_one_pass, lambda: False)
    [ready] = [c for c in kube.statuses[-1]["conditions"] if c["type"] == "Ready"]
    assert ready["status"] == "False"
    return ready["reason"], ready["message"], events


def reveals_nothing(message: str) -> bool:
    return not any(word in message for word in (*OTHER_KEYS, *OTHER_KEYS.values(), str(len(SECRET_VALUE))))


async def test_a_missing_colony_key_secret_is_named_as_missing():
    reason, message, events = await not_ready({})
    assert reason == "ColonyKeySecretMissing"
    assert message.startswith(f"Secret {NAMESPACE}/colony-key does not exist")
    assert events == [("Warning", reason, message)]


async def test_a_colony_key_secret_without_the_named_key_names_none_of_its_other_keys_or_values():
    reason, message, events = await not_ready({"colony-key": OTHER_KEYS})
    assert reason == "InvalidColonyKey"
    assert message == f"Secret {NAMESPACE}/colony-key has no key 'colonyPrvKey'"
    assert reveals_nothing(message) and events == [("Warning", reason, message)]


async def test_a_colony_key_that_is_not_a_private_key_is_named_without_its_length_or_value():
    reason, message, _ = await not_ready({"colony-key": {"colonyPrvKey": SECRET_VALUE}})
    assert reason == "InvalidColonyKey"
    assert message == (f"Secret {NAMESPACE}/colony-key key 'colonyPrvKey' is not a valid private key "
                       "(64 hexadecimal characters)")
    assert reveals_nothing(message)


async def test_an_executor_key_secret_without_the_named_key_names_none_of_its_other_keys():
    colony_key = {"colonyPrvKey": "d6eb959e9aec2e6fdc44b5862b269e987b8a4d6f2baca542d8acaa97ee5e74f6"}
    reason, message, _ = await not_ready({"colony-key": colony_key, "exec-key": OTHER_KEYS},
                                         executorKeySecretRef={"name": "exec-key"})
    assert reason == "InvalidExecutorKey"
    assert message == f"Secret {NAMESPACE}/exec-key has no key 'executorPrvKey'"
    assert reveals_nothing(message)


# --- the Colonies server's CA bundle (spec.server.caSecretRef) ------------------------------

KEYS = {"colony-key": {"colonyPrvKey": "d6eb959e9aec2e6fdc44b5862b269e987b8a4d6f2baca542d8acaa97ee5e74f6"},
        "exec-key": {"executorPrvKey": "8f8e1a4a5a5f0a3c1a5f3e0d4a2f1b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a"}}
TLS_SERVER = {"host": "colonies.example", "port": 443, "tls": True, "caSecretRef": {"name": "colonies-ca"}}


async def test_a_missing_ca_secret_is_named_as_missing():
    reason, message, events = await not_ready(KEYS, executorKeySecretRef={"name": "exec-key"}, server=TLS_SERVER)
    assert reason == "CASecretMissing"
    assert message.startswith(f"Secret {NAMESPACE}/colonies-ca does not exist")
    assert events == [("Warning", reason, message)]


async def test_a_ca_secret_without_pem_certificates_is_invalid_and_its_content_is_not_shown():
    secrets = KEYS | {"colonies-ca": {"ca.crt": SECRET_VALUE, **OTHER_KEYS}}
    reason, message, events = await not_ready(secrets, executorKeySecretRef={"name": "exec-key"}, server=TLS_SERVER)
    assert reason == "InvalidCA"
    assert message == (f"Secret {NAMESPACE}/colonies-ca key 'ca.crt' holds no valid PEM certificate "
                       "(a CA bundle: -----BEGIN CERTIFICATE----- ...)")
    assert reveals_nothing(message) and events == [("Warning", reason, message)]


async def test_a_ca_secret_without_the_named_key_names_none_of_its_other_keys():
    secrets = KEYS | {"colonies-ca": OTHER_KEYS}
    reason, message, _ = await not_ready(secrets, executorKeySecretRef={"name": "exec-key"}, server=TLS_SERVER)
    assert reason == "InvalidCA"
    assert message == f"Secret {NAMESPACE}/colonies-ca has no key 'ca.crt'"
    assert reveals_nothing(message)
