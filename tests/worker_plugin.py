"""Fake backends for worker tests, loaded inside a worker through LEVIT_BENCH_WORKER_PLUGIN (a test
hook: see levit_bench/worker.py).  Each wraps torch eager and misbehaves after a few bound calls
(the parity call and the warm-up pass): ``crash-in-rounds`` kills its process with SIGSEGV, ``exit-in-rounds``
exits with status 3, ``hang-in-rounds`` never returns.  ``LEVIT_BENCH_TEST_WEIGHTS_HASH`` (when set)
renames every model's weights hash, as another checkout's model code would."""
from __future__ import annotations

import dataclasses
import os
import signal
import time

from levit_bench import prepare, zoo
from levit_bench.backends import BACKENDS
from levit_bench.backends.base import Backend
from levit_bench.backends.torch_eager import TorchBackend

CALLS_BEFORE = 2  # bound calls that work: the warm-up's (1 at --warmup 0) and the first round's block (1 call at the tests' timing)


def _crash() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def _exit() -> None:
    os._exit(3)


def _hang() -> None:
    while True:
        time.sleep(60)


class _Misbehaving(Backend):
    def __init__(self, name: str, action) -> None:
        self.name, self.action = name, action

    def prepare(self, model, model_id, example, settings, cache):
        prepared = TorchBackend().prepare(model, model_id, example, settings, cache)
        runner, action = prepared.runner, self.action
        bind = runner.bind

        def bound(x):
            call, count = bind(x), [0]

            def misbehave():
                count[0] += 1
                if count[0] > CALLS_BEFORE:
                    action()
                return call()

            return misbehave

        runner.bind = bound
        return prepared


for _name, _action in (("crash-in-rounds", _crash), ("exit-in-rounds", _exit), ("hang-in-rounds", _hang)):
    BACKENDS[_name] = _Misbehaving(_name, _action)

if os.environ.get("LEVIT_BENCH_TEST_WEIGHTS_HASH"):
    _subject = zoo.subject

    def _renamed(name, **kw):
        built = _subject(name, **kw)
        return dataclasses.replace(built, model_id=dataclasses.replace(
            built.model_id, weights_hash=os.environ["LEVIT_BENCH_TEST_WEIGHTS_HASH"]))

    prepare.zoo.subject = _renamed
