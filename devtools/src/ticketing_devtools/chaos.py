"""Network faults on demand: a TCP relay between a process and a real server, cut at will.

    broker = TcpProxy("127.0.0.1", 5672).start()   # point RABBITMQ_URL at broker.port
    broker.cut()        # live connections drop; new ones are reset at once (no hangs)
    broker.restore()    # relaying again; clients reconnect on their own
    stripe.hold()       # connections stay open but nothing moves: a server that stalls
    stripe.release()    # what was held is delivered, in order
    broker.stop()

The servers themselves stay up (other tests and runs share them); only the processes
behind the relay lose them, which is what a network partition or a broker restart looks
like from the client side.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

# Big enough to move an AMQP frame or a PostgreSQL result page per call.
CHUNK_BYTES = 64 * 1024


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._stopped = False
        self._flowing = threading.Event()
        self._flowing.set()
        self._held_chunks = 0
        self._accepting = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def start(self) -> TcpProxy:
        self._accepting.start()
        return self

    def cut(self) -> None:
        """Drop every live connection and reset new ones until restore()."""
        with self._lock:
            self._cut = True
            sockets, self._open = self._open, set()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def hold(self) -> None:
        """Stall every connection, old and new: bytes are read but not passed on until
        release(), like a server (or a network) that stops answering without hanging up."""
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    @property
    def held_chunks(self) -> int:
        """How many reads have waited on hold() so far: proof that traffic was held."""
        return self._held_chunks

    def stop(self) -> None:
        self._stopped = True
        self._flowing.set()
        self.cut()
        _close(self._listener)
        self._accepting.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed by stop()
            with self._lock:
                refused = self._cut
            if refused:
                # SO_LINGER 0: the client sees a reset at once rather than a clean close
                # it might mistake for a server that said goodbye.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(CHUNK_BYTES):
                if not self._flowing.is_set():
                    with self._lock:
                        self._held_chunks += 1
                    self._flowing.wait()
                sink.sendall(chunk)
        except OSError:
            pass  # cut, or the other side went away: both ends close below
        for sock in (source, sink):
            with self._lock:
                self._open.discard(sock)
            _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
