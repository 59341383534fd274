"""A TCP relay from the machine's end of the real node's veth pair to the stack's servers.

The stack's servers listen on 127.0.0.1 only, which pods (in the node's network namespace) can
never reach. `python -m teststack.relay --listen 10.214.N.1 --port P ...` accepts on the
machine's end of the pair, port P, and passes each connection to 127.0.0.1:P: the apiserver
behind the `kubernetes` Service.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

CHUNK = 1 << 16


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _relay(port: int, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
    finally:
        for w in (server_w, client_w):
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()


async def serve(listen: str, ports: list[int]) -> None:
    servers = [await asyncio.start_server(lambda r, w, p=port: _relay(p, r, w), listen, port, reuse_address=True)
               for port in ports]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"relaying {listen}:{ports} -> 127.0.0.1", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--port", type=int, action="append", required=True)
    args = ap.parse_args()
    asyncio.run(serve(args.listen, args.port))


if __name__ == "__main__":
    main()
