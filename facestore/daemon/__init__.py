"""`facestore watch`: keep the cache current, retrain when labels changed enough, suggest.

Import what you need from its modules (`from facestore.daemon.loop import Daemon`):
this package imports nothing, so `facestore watch --help` starts fast.

loop.py           Daemon: start(), then run() reconciles until stopped
options.py        WatchOptions: the command's flags as one value
serving.py        the embedder of the active space and the current model it serves
wakeups.py        what wakes the loop: file events + data_version, LISTEN, the timer
rolling.py        which faces a timer pass checks (a rolling slice of ids)
pairs.py          the training pairs the retrain policy compares with the model's
policy.py         RetrainPolicy (pure) and RetrainScheduler (its state)
trigger.py        RetrainTrigger: when to retrain, in one place
child_retrain.py  the retrain in a child process
children.py       what the child processes share: logging, a store, the answer
suggester.py      face_suggestion rows for unverified faces
clusterer.py      the groups of unknown faces: joins, and full passes
cluster_memory.py the groups in memory, for joins
full_pass.py      a large library's full re-cluster in a child process
telemetry.py      Prometheus metrics and the health behind /healthz, /readyz
http.py           the endpoints, served from a thread (watch --metrics-addr)
systemd.py        READY=1, WATCHDOG=1, STOPPING=1 to $NOTIFY_SOCKET
signals.py        SIGTERM / SIGINT
"""
