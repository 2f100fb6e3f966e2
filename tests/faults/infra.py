"""Things the fault tests break on purpose: a private Redis, a TCP proxy to PostgreSQL, SSE.

The shared Redis (6379) and PostgreSQL (5432) serve other work on this machine and are never
stopped. A Redis outage is modelled with our own `redis-server` on a free port (killed and
started again on that port); a database outage with a TCP proxy in front of the shared
PostgreSQL whose listener and open connections we cut, then restore on the same port.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from tests.gateway.harness import free_port


class RedisServer:
    """A throwaway redis-server we may kill. With `persistent`, every write is fsynced to an
    append-only file, as a production Redis holding ledger events is configured."""

    def __init__(self, *, persistent: bool = True) -> None:
        self.port = free_port()
        self.persistent = persistent
        self.dir = Path(tempfile.mkdtemp(prefix="frugate-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--daemonize", "no", "--dir", str(self.dir),
                "--enable-debug-command", "local"]  # DEBUG SLEEP stalls it on purpose
        args += (["--appendonly", "yes", "--appendfsync", "always"] if self.persistent
                 else ["--appendonly", "no"])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL: the server vanishes; clients see resets, then refused connections."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class TcpProxy:
    """127.0.0.1:<port> -> target, in a thread. `cut()` closes the listener and every open
    connection (clients see resets, then refused connects); `restore()` listens again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> TcpProxy:
        self.thread.start()
        self.restore()
        return self

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def restore(self) -> None:
        self._run(self._listen())

    def cut(self) -> None:
        self._run(self._cut())

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                  reuse_address=True)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def sse_events(raw: bytes) -> list[bytes]:
    """The `data:` payloads of a complete SSE body; asserts the framing is well formed."""
    assert raw.endswith(b"\n\n"), f"stream does not end on an event boundary: {raw[-80:]!r}"
    out = []
    for event in raw.split(b"\n\n")[:-1]:
        lines = event.split(b"\n")
        assert all(line.startswith((b"data: ", b":")) for line in lines), event[:200]
        data = [line[6:] for line in lines if line.startswith(b"data: ")]
        if data:
            out.append(b"\n".join(data))
    return out


def error_frame(raw: bytes) -> dict[str, Any]:
    """For a stream that broke: checks it ends with an error event then [DONE]; returns the
    error object."""
    events = sse_events(raw)
    assert events[-1] == b"[DONE]", events[-3:]
    last = orjson.loads(events[-2])
    assert set(last) == {"error"}, last
    err = last["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"], err
    for ev in events[:-2]:  # everything before it is a normal chunk
        assert "error" not in orjson.loads(ev), ev
    return err  # type: ignore[no-any-return]


async def open_holds(state: Any) -> int:
    """Reservations not yet settled, in either admission implementation."""
    adm = state.admission
    if isinstance(getattr(adm, "open", None), dict):
        return len(adm.open)
    return sum([await adm.open_holds(t) for t in state.directory.tenants])


async def settled(state: Any, quiet_rounds: int = 5) -> int:
    """Wait until no hold is open and the ledger stopped growing; returns rows written."""
    last, stable = -1, 0
    while stable < quiet_rounds:
        await asyncio.sleep(0.1)
        await state.ledger.flush()
        if state.ledger_consumer is not None:
            await state.ledger_consumer.drain()
        written = state.ledger.written + (state.ledger_consumer.written
                                          if state.ledger_consumer else 0)
        holds = await open_holds(state)
        stable = stable + 1 if (written == last and holds == 0) else 0
        last = written
    return last
