"""``python -m upgrader_lab.apiserver --dir DIR [--port 0] [--host 127.0.0.1]``.

Owns the process: argument parsing, logging to stderr (the runner redirects it to
``DIR/logs/apiserver.log``), running :class:`LabServer` in the foreground until SIGTERM or
SIGINT, and turning bad input into one line on stderr with exit code 2.
Must not: daemonize, or print secrets.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from upgrader.errors import ConfigError, ExitCode
from upgrader_lab.apiserver.store import StateError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m upgrader_lab.apiserver")
    parser.add_argument("--dir", required=True, type=Path, help="lab directory (holds spec.json)")
    parser.add_argument(
        "--port", type=int, default=0, help="port (0: reuse the last one, else any)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not 0 <= args.port <= 65535:
        print(f"--port: {args.port} is not a TCP port", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    from upgrader_lab.apiserver.server import LabServer

    # Block the stop signals before any thread starts (threads inherit the mask) and take
    # them synchronously below: no Python signal handler, so no lock can be re-entered.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        server = LabServer(args.dir, args.host, args.port)
        server.start()
    except (ConfigError, StateError) as e:
        print(str(e), file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    except OSError as e:
        print(f"cannot start the lab API server: {e}", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    signum = signal.sigwait(stop_signals)
    logging.getLogger("upgrader_lab.apiserver").info("stopping on %s", signal.Signals(signum).name)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
