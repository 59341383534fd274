"""KubeApi's requests say who sends them: the apiserver's audit log (and anyone reading it)
tells the operator's requests from every other client's by their User-Agent."""

from __future__ import annotations

from kubernetes_asyncio import client
from kubernetes_asyncio.client.api_client import ApiClient

import colonies_operator
from colonies_operator.runtime.kube import KubeApi


async def test_every_request_of_both_connection_pools_carries_the_operators_user_agent():
    requests, streams = ApiClient(client.Configuration()), ApiClient(client.Configuration())
    kube = KubeApi(requests, streams)
    try:
        for api in (kube.api_client, kube.stream_client):
            assert api.default_headers["User-Agent"] == f"colonies-operator/{colonies_operator.__version__}"
    finally:
        await kube.close()
