"""Worker processes hosting a TTS library: started, fed one cue at a time, restarted on failure.

A crash in a C speech library takes its whole process down, so such a library
runs only inside these workers (voice/worker_main.py).  The parent talks to
each worker over a socket pair, in length-prefixed pickles:

    parent -> worker   (method, *args)            e.g. ("render", text, voice, rate)
    worker -> parent   ("ok", result) | ("error", message)

The worker builds its backend from a "module:Class" spec; the backend's public
methods are what the parent may call.  A worker that dies, answers with an
error, or says nothing for `timeout` seconds is killed, a fresh one is started
and the cue is tried once more; a second failure is an EngineError naming the cue.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from voiceflex import files
from voiceflex.errors import EngineError
from voiceflex.voice import worker_main

CUE_TIMEOUT = 20.0  # seconds one cue may take, worker start-up included
WORKDIR_PREFIX = "voiceflex-workers-"

# Runs in the worker: take the parent's import path first (as multiprocessing's
# spawn does), so the worker imports exactly the modules the parent would.
_BOOTSTRAP = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
    "from voiceflex.voice.worker_main import main; main(int(sys.argv[2]), sys.argv[3])"
)


def default_workers() -> int:
    """How many workers render cues: one per core, at most two (measured: a third adds nothing)."""
    return min(2, os.cpu_count() or 1)


class _Worker:
    """One worker process and the parent's end of its connection."""

    def __init__(self, backend: str, workdir: str):
        parent_end, child_end = socket.socketpair()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        # Absolute, because the worker runs in `workdir` ("" would mean that folder).
        path = json.dumps([os.path.abspath(p) for p in sys.path])
        with child_end:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, path, str(child_end.fileno()), backend],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                # Speech libraries print ("Audio saved to ..."); the library never does.
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                pass_fds=(child_end.fileno(),),
            )
        self.conn = parent_end  # a socket: what wait() watches; its fd is what worker_main reads
        self.text: str | None = None  # the cue it is working on
        self.deadline = 0.0

    def send(self, method: str, *args: Any, timeout: float) -> None:
        try:
            worker_main.send(self.conn.fileno(), (method, *args))
        except OSError:
            # It died since its last answer (killed, or its library crashed
            # after the cue).  Reading its answer finds the end of the
            # connection and says why, like any other failure, so the cue is
            # retried in a fresh worker instead of a BrokenPipeError escaping.
            pass
        self.deadline = time.monotonic() + timeout

    def death(self) -> str:
        """Why the (ended) worker ended, from its exit status and last line of stderr."""
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # closed its end but lives on: end it
            self.process.kill()
            code = self.process.wait()
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return f"the speech process {how}" + (f" ({lines[-1].strip()})" if lines else "")

    def stop(self) -> None:
        self.conn.close()
        # A worker keeps nothing worth a clean exit (its scratch folder goes with
        # the pool), and letting it shut espeak down costs 30 ms a worker.
        self.process.kill()
        self.process.wait()
        self._stderr.close()


class WorkerPool:
    """Up to `workers` worker processes hosting the backend named `backend` ("module:Class")."""

    def __init__(self, backend: str, *, workers: int = 1, timeout: float = CUE_TIMEOUT):
        if workers < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.backend = backend
        self.workers = workers
        self.timeout = timeout
        self._live: list[_Worker] = []
        self._started = 0
        # Each worker runs in a folder of its own under this one, for its scratch
        # files; removing it here cleans up after killed workers too.  Its name
        # carries our pid, so a pool whose process was killed outright has its
        # folder removed by the next pool.
        self._workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
        sweep_dead(Path(self._workdir).parent, WORKDIR_PREFIX)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self._live:
            self._live.pop().stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def start(self) -> None:
        """Start all `workers` now, side by side, instead of each when first needed."""
        while len(self._live) < self.workers:
            self._start()

    def call(self, method: str, *args: Any) -> Any:
        """`method(*args)` on the backend in one worker (a restarted one if the first fails)."""
        for attempt in (1, 2):
            worker = self._live[0] if self._live else self._start()
            worker.send(method, *args, timeout=self.timeout)
            ok, value = self._answer(worker, worker.deadline - time.monotonic())
            if ok:
                return value
            self._retire(worker)
            if attempt == 2:
                raise EngineError(f"the speech engine failed: {value}")
        raise AssertionError("unreachable")

    def render(self, texts: Sequence[str], *args: Any) -> Iterator[tuple[str, Any]]:
        """Yield (text, backend.render(text, *args)) for every text, as workers finish them."""
        queue = deque(dict.fromkeys(texts))
        failures: Counter[str] = Counter()
        idle: list[_Worker] = list(self._live)
        busy: list[_Worker] = []
        while queue or busy:
            while queue and (idle or len(self._live) < self.workers):
                worker = idle.pop() if idle else self._start()
                worker.text = queue.popleft()
                worker.send("render", worker.text, *args, timeout=self.timeout)
                busy.append(worker)
            soonest = min(w.deadline for w in busy)
            ready = wait([w.conn for w in busy], timeout=max(0.0, soonest - time.monotonic()))
            for worker in list(busy):
                if worker.conn in ready:
                    ok, value = self._answer(worker, 0)
                elif time.monotonic() >= worker.deadline:
                    ok, value = False, f"no answer within {self.timeout:g} s"
                else:
                    continue
                busy.remove(worker)
                text = worker.text
                assert text is not None
                if ok:
                    if queue:  # its next cue first: it speaks while the caller stores this one
                        worker.text = queue.popleft()
                        worker.send("render", worker.text, *args, timeout=self.timeout)
                        busy.append(worker)
                    else:
                        idle.append(worker)
                    yield text, value
                    continue
                self._retire(worker)
                failures[text] += 1
                if failures[text] > 1:
                    raise EngineError(f'could not speak "{text}": {value}', cue=text)
                queue.appendleft(text)

    def _start(self) -> _Worker:
        self._started += 1
        workdir = os.path.join(self._workdir, str(self._started))
        os.mkdir(workdir)
        worker = _Worker(self.backend, workdir)
        self._live.append(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        self._live.remove(worker)
        worker.stop()

    def _answer(self, worker: _Worker, timeout: float) -> tuple[bool, Any]:
        """(True, result) or (False, why it failed); never raises for a broken worker."""
        try:
            if not wait([worker.conn], max(0.0, timeout)):
                return False, f"no answer within {self.timeout:g} s"
            status, value = worker_main.recv(worker.conn.fileno())
        except (EOFError, OSError):
            return False, worker.death()
        return status == "ok", value


def sweep_dead(folder: Path, prefix: str) -> None:
    """Remove the scratch folders `prefix<pid>-...` in `folder` whose process is gone."""
    files.sweep(folder, re.compile(re.escape(prefix) + r"(\d+)-"))

