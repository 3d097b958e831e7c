"""A TCP relay: `python bench/_relay.py LISTEN_PORT TARGET_PORT` on 127.0.0.1.

bench/soak.py puts it in front of the moto S3 server as the endpoint the app uses, and
kills it to stop that endpoint (connections refused) while moto keeps its objects.
Nothing heavy is imported, so it is back on its port at once when started again.
"""

from __future__ import annotations

import asyncio
import sys


async def relay_main(listen: int, target: int) -> None:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(relay_main(int(sys.argv[1]), int(sys.argv[2])))
