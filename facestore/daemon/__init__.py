"""`facestore watch`: keep the cache current, retrain when labels changed enough, suggest.

Import what you need from its modules (`from facestore.daemon.loop import Daemon`):
this package imports nothing, so `facestore watch --help` starts fast.

Its modules, a line each: docs/architecture.md, Layout (a test keeps that list whole).
"""
