"""flows.server: one temporary Prefect server shared by a command, stopped afterwards."""
from __future__ import annotations

import sys

import pytest

from flows import server


def test_command_runs_against_a_shared_server_that_is_stopped_afterwards(tmp_path, capfd):
    out = tmp_path / "seen.txt"
    script = (f"import os, pathlib; pathlib.Path({str(out)!r}).write_text("
              "os.environ['PREFECT_API_URL'] + ' ' + os.environ['FUSEBENCH_KEEP_PREFECT_API_URL']); "
              "raise SystemExit(3)")
    code = server.main(["--", sys.executable, "-c", script])
    assert code == 3                                             # the command's exit code
    api_url, keep = out.read_text().split()
    assert api_url.startswith("http://127.0.0.1:") and api_url.endswith("/api") and keep == "1"
    assert not server.healthy(api_url, timeout=1.0)              # process group stopped
    assert "Prefect server at" in capfd.readouterr().err


def test_no_command_is_a_clear_error(capsys):
    assert server.main([]) == 2
    assert "no command given" in capsys.readouterr().err


def test_free_port_is_bindable():
    import socket

    port = server.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_server_that_cannot_start_fails_naming_its_log(tmp_path):
    import socket

    from pipeline.errors import FuseBenchError

    with socket.socket() as busy:                                # the port is taken
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(FuseBenchError, match="server.log"):
            with server.temporary_server(port=port, timeout=60, log_path=tmp_path / "server.log"):
                pass


def test_sigterm_reaches_the_command_and_the_server_is_stopped(tmp_path):
    import signal
    import subprocess
    import time

    seen = tmp_path / "url.txt"
    script = (f"import os, pathlib, time; pathlib.Path({str(seen)!r}).write_text(os.environ['PREFECT_API_URL']); "
              "time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-m", "flows.server", "--", sys.executable, "-c", script],
                            cwd=str(tmp_path.parent), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not seen.is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    api_url = seen.read_text()
    assert server.healthy(api_url)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0                            # the command was terminated
    assert not server.healthy(api_url, timeout=1.0)              # and the server did not outlive it
