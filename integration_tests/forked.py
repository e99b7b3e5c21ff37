"""Starts `main.py` as a process forked from one that has already imported the connector and the CDK.

Each run is still a process of its own: its own stdin, stdout and stderr pipes, exit status and
signals, its modules as a fresh `python main.py` has them once imported (nothing runs in the forking
process but imports). It starts in milliseconds instead of the seconds those imports take, which
were most of the suite's time. `HEAP_TESTS_SPAWN=1` starts every run as a plain `python main.py`.

The forking process (the zygote) serves one Unix socket: a request carries the command line and the
three pipe ends; a supervisor forked for it forks the run, sends back its pid and then its exit code.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import IO

MAIN = str(Path(__file__).resolve().parent.parent / "main.py")
PR_SET_PDEATHSIG = 1


class ForkedProcess:
    """What `subprocess.Popen` gives run_connector (pipes, wait, kill, returncode), for a forked run."""

    def __init__(self, args: list[str]) -> None:
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe()
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control.connect(Zygote.path())
        socket.send_fds(self.control, [json.dumps(args).encode()], [stdin_read, stdout_write, stderr_write])
        for end in (stdin_read, stdout_write, stderr_write):
            os.close(end)
        self.stdin: IO[bytes] = os.fdopen(stdin_write, "wb")
        self.stdout: IO[bytes] = os.fdopen(stdout_read, "rb")
        self.stderr: IO[bytes] = os.fdopen(stderr_read, "rb")
        self.answers = self.control.makefile("rb")
        self.pid = int(self.answers.readline())
        self.returncode: int | None = None

    def wait(self) -> int:
        """Waits for the run to end; its exit code (negative: the signal that ended it)."""
        if self.returncode is None:
            self.returncode = int(self.answers.readline())
            self.answers.close()
            self.control.close()
        return self.returncode

    def kill(self) -> None:
        """Kills the run, unless it has ended."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def start(args: list[str]) -> ForkedProcess | subprocess.Popen:
    """`python main.py <args>`, forked from the zygote (or spawned, with HEAP_TESTS_SPAWN=1)."""
    if os.environ.get("HEAP_TESTS_SPAWN") == "1":
        return subprocess.Popen(
            [sys.executable, MAIN, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    return ForkedProcess(args)


class Zygote:
    """The one forking process of this test process, started on first use and killed at exit."""

    started: tuple[subprocess.Popen, str] | None = None
    lock = threading.Lock()

    @classmethod
    def path(cls) -> str:
        """The zygote's socket, once it serves."""
        with cls.lock:
            if cls.started is None or cls.started[0].poll() is not None:
                folder = tempfile.mkdtemp(prefix="heap-zygote-")
                path = os.path.join(folder, "socket")
                process = subprocess.Popen(
                    [sys.executable, "-m", "integration_tests.forked", path],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    cwd=Path(MAIN).parent,
                )
                if process.stdout is None or process.stdout.readline() != b"ready\n":
                    raise RuntimeError("the test zygote did not start")
                atexit.register(process.kill)
                cls.started = (process, path)
            return cls.started[1]


def serve(path: str) -> None:
    """The zygote: imports what every run imports, then forks a supervisor for each request."""
    import boto3  # noqa: F401  (imported by a sync with a rejected-records store)

    import destination_heap_analytics.destination  # noqa: F401

    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # ends with the test process that started it
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            supervise(connection)
        connection.close()


def supervise(connection: socket.socket) -> None:
    """Forks the run a request asks for, with the request's pipes as its stdin, stdout and stderr; sends back
    its pid, then its exit code. Never returns."""
    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    pid = os.fork()
    if pid == 0:
        connection.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        run_main(json.loads(message))
    for fd in fds:
        os.close(fd)
    connection.sendall(f"{pid}\n".encode())
    _, status = os.waitpid(pid, 0)
    connection.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
    os._exit(0)


def run_main(args: list[str]) -> None:
    """Runs main.py as `python main.py <args>` would, down to its exit code and what reaches stderr. Never
    returns."""
    sys.argv = [MAIN, *args]
    code = 0
    try:
        runpy.run_path(MAIN, run_name="__main__")
    except SystemExit as exit:
        if exit.code is None or isinstance(exit.code, int):
            code = exit.code or 0
        else:
            print(exit.code, file=sys.stderr)
            code = 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    try:
        threading._shutdown()  # type: ignore[attr-defined]  (joins non-daemon threads, as interpreter exit does)
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        traceback.print_exc()
        code = code or 1
    os._exit(code)


if __name__ == "__main__":
    serve(sys.argv[1])
