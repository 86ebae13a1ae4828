#!/usr/bin/env python3
"""Many concurrent connections for the proxy tests.
  echo_load.py serve PORT          an echo server (asyncio)
  echo_load.py load PORT N ROUNDS  open N connections at once, then on each, ROUNDS times, send
                                   a message naming the connection and read the same bytes back;
                                   prints "ok N" or the first mismatch, exits non-zero on error.
  echo_load.py slow PORT BYTES S   ask the server for BYTES bytes followed by its close ("BLAST"),
                                   read nothing for S seconds (so a proxy in between holds data
                                   when the close reaches it), then read to the end; prints
                                   "ok BYTES" when every byte and the end of stream arrived."""
import asyncio
import resource
import sys


async def serve(port):
    async def echo(reader, writer):
        try:
            first = await reader.read(65536)
            if first.startswith(b"BLAST "):
                writer.write(b"x" * int(first.split()[1]))
                await writer.drain()
                return
            writer.write(first)
            await writer.drain()
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


async def load(port, n, rounds):
    conns = []
    for i in range(n):
        conns.append(await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10))

    async def talk(i, reader, writer):
        for r in range(rounds):
            msg = f"conn {i} round {r} ".encode() * (1 + (i % 50))
            writer.write(msg)
            await writer.drain()
            got = await asyncio.wait_for(reader.readexactly(len(msg)), 30)
            if got != msg:
                raise RuntimeError(f"connection {i} round {r}: sent {len(msg)} bytes, got other bytes back")
        return len(msg)

    await asyncio.gather(*(talk(i, r, w) for i, (r, w) in enumerate(conns)))
    for _, w in conns:
        w.close()
    print(f"ok {n}")


async def slow(port, nbytes, pause):
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    writer.write(f"BLAST {nbytes}\n".encode())
    await writer.drain()
    await asyncio.sleep(pause)
    got = 0
    while True:
        data = await asyncio.wait_for(reader.read(1 << 20), 10)
        if not data:
            break
        got += len(data)
    writer.close()
    if got != nbytes:
        raise RuntimeError(f"asked for {nbytes} bytes, got {got} before the end of stream")
    print(f"ok {nbytes}")


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if sys.argv[1] == "serve":
        asyncio.run(serve(int(sys.argv[2])))
    else:
        try:
            if sys.argv[1] == "slow":
                asyncio.run(slow(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
            else:
                asyncio.run(load(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
        except Exception as e:  # one line for the test's failure message
            print(f"error: {type(e).__name__}: {e}")
            sys.exit(1)


if __name__ == "__main__":
    main()
