"""`facestore watch`: keep the cache current, retrain when labels changed enough, suggest.

options.py    WatchOptions: the command's flags as one value
policy.py     RetrainPolicy (pure) and RetrainScheduler (its state)
wakeups.py    what wakes the loop: file events + data_version, LISTEN, the timer
suggester.py  face_suggestion rows for unverified faces
telemetry.py  Prometheus metrics and the health behind /healthz, /readyz
http.py       the endpoints, served from a thread (watch --metrics-addr)
systemd.py    READY=1, WATCHDOG=1, STOPPING=1 to $NOTIFY_SOCKET
signals.py    SIGTERM / SIGINT
loop.py       Daemon: start(), then run() reconciles until stopped
"""

from facestore.daemon.loop import Daemon
from facestore.daemon.options import VERIFIED_SHARE, WatchOptions
from facestore.daemon.policy import RetrainPolicy, RetrainScheduler, count_changes, fingerprint
from facestore.daemon.signals import exit_on_signals_while_starting, stop_on_signals
from facestore.daemon.suggester import Suggester
from facestore.daemon.wakeups import DataVersionProbe, WakeSource, file_watcher, sqlite_path

__all__ = [
    "VERIFIED_SHARE",
    "Daemon",
    "DataVersionProbe",
    "RetrainPolicy",
    "RetrainScheduler",
    "Suggester",
    "WakeSource",
    "WatchOptions",
    "count_changes",
    "exit_on_signals_while_starting",
    "file_watcher",
    "fingerprint",
    "sqlite_path",
    "stop_on_signals",
]
