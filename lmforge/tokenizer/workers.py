"""The tokenize stage's worker processes: tasks (Arrow record batches) out over one pipe per
worker, results back in task order, with the main process encoding beside them.

Tasks travel as Arrow IPC messages, results as pickles. A :class:`Job` names the module-level
functions a worker runs (picklable by reference, so spawn works where fork does not).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Callable, Iterator

from lmforge.errors import LmforgeError

IN_FLIGHT = 2  # tasks per worker sent and not yet answered: one running, one ready (a short tail)


@dataclass(frozen=True)
class Job:
    """What a worker runs: ``prepare(prepare_arg)`` once at start, ``configure(*settings)`` once
    the settings come, then ``work(batch)`` for each task."""

    prepare: Callable
    prepare_arg: object
    configure: Callable
    work: Callable


class Workers:
    """``n`` worker processes, each with one pipe to this one, stopped and reaped on exit; they
    die with this process and leave Ctrl-C to it (lmforge/executor.py).

    Forked, they inherit what this process has loaded (spawned where there is no fork, they start
    bare); each runs ``job.prepare`` at once, then takes :meth:`configure`'s settings. No helper threads
    (multiprocessing.Pool's three threads cost the main process about 1 ms of CPU per task).
    """

    def __init__(self, n: int, job: Job):
        import multiprocessing as mp

        # fork where there is one: a worker starts in milliseconds with the modules imported, and
        # a caller's script needs no `if __name__ == "__main__"` guard.
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        self.conns, self.procs = [], []
        if n:  # memory Arrow keeps for reuse would be shared with the workers: reusing it here would copy it
            import pyarrow as pa

            pa.default_memory_pool().release_unused()
        try:
            for _ in range(n):
                conn, child = ctx.Pipe()
                self.procs.append(ctx.Process(target=_worker_main, args=(child, job, os.getpid()), daemon=True))
                self.procs[-1].start()
                child.close()
                self.conns.append(conn)
        except BaseException:
            self.__exit__()
            raise

    def configure(self, *settings) -> None:
        """Send every worker the arguments of ``job.configure``."""
        for conn in self.conns:
            conn.send(settings)

    def results(self, tasks: Iterator, work: Callable) -> Iterator[tuple[int, object]]:
        """(rows, result) of each task, in task order: see :class:`_Dispatch`."""
        return _Dispatch(tasks, self.conns, self.procs, work).results()

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        from lmforge.executor import stop_processes

        for conn in self.conns:
            try:
                conn.send_bytes(b"")  # stop, if not told yet (a worker reads on until it gets it)
            except OSError:
                pass
        if exc[:1] in ((), (None,)):
            for proc in self.procs:
                proc.join()
        stop_processes(self.procs)  # after an error or Ctrl-C: now, the tasks they hold are dropped
        for conn in self.conns:
            conn.close()


class _Dispatch:
    """One pool run: this process reads the tasks, keeps each worker IN_FLIGHT tasks ahead,
    yields the results in task order, and encodes a task itself whenever no answer is waiting,
    so that with 2 workers on 2 cores there is no third process asking for a core."""

    def __init__(self, tasks: Iterator, conns: list, procs: list, work: Callable):
        self.tasks, self.conns, self.procs, self.work = tasks, conns, procs, work
        self.load, self.sent, self.done = [0] * len(conns), 0, 0
        self.ready: dict[int, dict] = {}
        self.rows: dict[int, int] = {}
        self.more = True
        # this process runs ahead of the slowest worker by at most this many results
        self.ahead = 4 * IN_FLIGHT * (len(conns) + 1)

    def results(self) -> Iterator[tuple[int, dict]]:
        while True:
            while self.more and min(self.load) < IN_FLIGHT:  # top up the least loaded worker
                w = self.load.index(min(self.load))
                if (batch := self._next()) is not None:
                    self.conns[w].send_bytes(_pack(self.sent - 1, batch))
                    self.load[w] += 1
            while self.done in self.ready:
                yield self.rows.pop(self.done), self.ready.pop(self.done)
                self.done += 1
            if self.done == self.sent and not self.more:
                return
            answers = self._receive(block=not self.more or self.sent - self.done >= self.ahead)
            if not answers and (batch := self._next()) is not None:  # nobody answered: encode one here
                self.ready[self.sent - 1] = self.work(batch)

    def _next(self):
        """The next task, numbered; None at the end, when the workers are told to stop."""
        batch = next(self.tasks, None) if self.more else None
        if batch is None:
            if self.more:
                self.more = False
                for conn in self.conns:  # each stops after its last task, which saves a wait at the end
                    conn.send_bytes(b"")
            return None
        self.rows[self.sent] = batch.num_rows
        self.sent += 1
        return batch

    def _receive(self, block: bool) -> list:
        """Answers ready now (or, blocking, the next ones); a worker's error is raised here."""
        from multiprocessing.connection import wait

        busy = [conn for conn, load in zip(self.conns, self.load) if load]
        answers = []
        for conn in wait(busy, None if block else 0) if busy else ():
            w = self.conns.index(conn)
            try:
                number, result, error = conn.recv()
            except EOFError:
                raise LmforgeError(f"a tokenize worker process died (exit code {self.procs[w].exitcode}); "
                                   "out of memory? lower [tokenizer] workers") from None
            if error is not None:
                raise error
            self.ready[number] = result
            self.load[w] -= 1
            answers.append(number)
        return answers


def _pack(number: int, batch):
    """A task as one message: its number, then the batch as an Arrow IPC stream."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    sink.write(struct.pack("<q", number))
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def _unpack(message: bytes) -> tuple:
    import pyarrow as pa

    (number,) = struct.unpack_from("<q", message)
    return number, pa.ipc.open_stream(pa.py_buffer(message)[8:]).read_next_batch()


def _worker_main(conn, job: "Job", parent_pid: int) -> None:
    """A worker process: ``job.prepare``, take the settings, then answer each task with (task
    number, result, error); an empty message ends it."""
    import gc
    import pickle

    import pyarrow as pa

    from lmforge.executor import worker_started

    worker_started(parent_pid)  # dies with the main process, which handles Ctrl-C
    gc.freeze()  # what fork copied is never collected here: no copy-on-write faults from gc passes
    pa.set_cpu_count(1)  # one worker, one core: Arrow's threads would compete with the others
    try:
        job.prepare(job.prepare_arg)  # while the main process plans and reads the first tasks
        error = None
    except Exception as exc:  # noqa: BLE001 - the main process does the same and says why first
        error = _picklable(exc)
    settings = conn.recv_bytes()
    if not settings:  # stopped before it began (no documents, say)
        return
    if error is None:
        job.configure(*pickle.loads(settings))
    while message := conn.recv_bytes():
        number, batch = _unpack(message)
        try:
            if error is not None:
                raise error
            conn.send((number, job.work(batch), None))
        except Exception as exc:  # noqa: BLE001 - handed to the main process, which raises it
            conn.send((number, None, _picklable(exc)))


def _picklable(exc: Exception) -> Exception:
    import pickle
    import traceback

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError("".join(traceback.format_exception(exc)))
