"""systemd's notify protocol: READY=1, WATCHDOG=1, STOPPING=1 as datagrams to
$NOTIFY_SOCKET (no dependency). The watchdog thread pings only while the loop is alive,
so a loop that hangs (or a frozen process) is restarted by systemd."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends to $NOTIFY_SOCKET; does nothing where it is unset (not under systemd)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid.isdigit() or int(pid) == os.getpid()
        self.watchdog_seconds = int(usec) / 1e6 if usec.isdigit() and mine else None
        self._socket: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, message: str) -> None:
        if not self.address:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto(message.encode(), self.address)
        except OSError as exc:
            log.warning("Could not notify systemd (%s): %s", message, exc)

    def start_watchdog(self, alive: Callable[[], tuple[bool, str]]) -> None:
        """Ping WATCHDOG=1 every half WatchdogSec while alive() says the loop runs."""
        if not self.address or self.watchdog_seconds is None:
            return
        every = self.watchdog_seconds / 2

        def ping() -> None:
            warned = False
            while not self._stop.wait(every):
                ok, why = alive()
                if ok:
                    self.send("WATCHDOG=1")
                    warned = False
                elif not warned:
                    log.error("Not pinging the systemd watchdog: %s", why)
                    warned = True

        self._thread = threading.Thread(target=ping, name="facestore-watchdog", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
