"""``soundatlas serve``: the atlas's page and API over HTTP, with optional OSC in and out."""

from __future__ import annotations

import argparse
import gc
import sys

from soundatlas.cli.common import (
    ATLAS,
    EXIT_FAIL,
    EXIT_OK,
    UsageError,
    add_options,
    atlas_dir,
    checked,
    nonnegative_int,
)

__all__ = ["register", "cmd_serve"]


@checked
def _osc_out(text: str) -> str:
    """``--osc-out``: HOST:PORT, checked here, so a bad one is a usage error naming the option."""
    from soundatlas.web.osc import parse_endpoint

    return str(parse_endpoint(text, what="", default_host=None))


@checked
def _osc_in(text: str) -> str:
    """``--osc-in``: [HOST:]PORT (host 127.0.0.1), checked here like ``--osc-out``."""
    from soundatlas.web.osc import parse_endpoint

    return str(parse_endpoint(text, what="", default_host="127.0.0.1"))


def _listening_socket(host: str, port: int):
    """A socket bound to ``host:port`` (0: a free port), as uvicorn would bind it."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said out loud: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose
    # protocol says TCP; with proto 0 every kept-alive request waited ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageError(f"--host {host} --port {port}: cannot listen there "
                         f"({e.strerror})") from None
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    sock.set_inheritable(True)
    return sock


def _add_serve(sub, parents) -> None:
    # serve prints no results: no --json or --quiet (parents)
    sv = sub.add_parser("serve", help="serve the atlas's map and its API in a web browser",
                        description="Serve the atlas over HTTP: the page at / and a "
                        "JSON/binary API under /api (listed at /docs). It writes only the "
                        "user's tags, stars, notes and collections (--read-only: nothing). "
                        "Binds 127.0.0.1 unless told otherwise.")
    add_options(sv, ATLAS)
    sv.add_argument("--model", "-m", metavar="NAME",
                    help="model the page shows first (default: the first fully embedded one)")
    sv.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                    help="address to bind (default: 127.0.0.1; another address exposes the "
                    "library's files to the network)")
    sv.add_argument("--port", type=nonnegative_int, default=8000, metavar="N",
                    help="port to listen on (default: 8000; 0: a free port, printed)")
    sv.add_argument("--get", metavar="/api/PATH",
                    help="answer this one GET in-process, print it and exit (0 for a 2xx "
                    "answer, 1 otherwise) without binding a port")
    sv.add_argument("--osc-out", type=_osc_out, metavar="HOST:PORT",
                    help="send the page's hover, select, play and selection events as OSC "
                    "messages (UDP) to HOST:PORT, e.g. 127.0.0.1:9000, or a broadcast address "
                    "such as 192.168.1.255:9000 (address space: README)")
    sv.add_argument("--osc-in", type=_osc_in, metavar="[HOST:]PORT",
                    help="listen for OSC (UDP) on PORT (host 127.0.0.1 unless given): "
                    "/soundatlas/cursor x y z moves a cursor in the page and plays the nearest "
                    "sample; also /soundatlas/cursor/norm u v w, /soundatlas/play id, "
                    "/soundatlas/select id")
    sv.add_argument("--read-only", action="store_true",
                    help="never write the atlas, not even the tags, stars, notes and "
                    "collections the page can otherwise edit")
    sv.add_argument("--approximate-above", type=nonnegative_int, metavar="N",
                    help="search the nearest sounds (neighbours, analogies, query by example) "
                    "of models with more than N similarity vectors approximately: a FAISS "
                    "inverted file, its recall measured when it is built and given in each "
                    "answer; a request may still ask for an exact one (default: 100,000)")
    sv.add_argument("--render-queue", type=nonnegative_int, default=4, metavar="N",
                    help="renders (paths played as sound, mosaics) that may wait while one "
                    "runs; one more is answered 503 with Retry-After, and a render whose client "
                    "disconnects stops (default: 4)")
    sv.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """``soundatlas serve``: serve until Ctrl-C, or answer one ``--get`` in-process."""
    import asyncio

    from soundatlas.web.app import (
        APPROXIMATE_ABOVE,
        call,
        create_app,
        describe_response,
        end_streams,
        is_loopback_host,
    )

    if args.port > 65535:
        raise UsageError(f"--port {args.port} must be at most 65535")
    loopback = is_loopback_host(args.host)
    allowed = {"127.0.0.1", "localhost", "::1", args.host} if loopback else None
    live = args.get is None  # one in-process request needs no OSC sockets
    app = create_app(atlas_dir(args), model=args.model, allowed_hosts=allowed,
                     osc_out=args.osc_out if live else None,
                     osc_in=args.osc_in if live else None, read_only=args.read_only,
                     render_queue=args.render_queue,
                     approximate_above=(APPROXIMATE_ABOVE if args.approximate_above is None
                                        else args.approximate_above))
    if args.get is not None:
        target = args.get if args.get.startswith("/") else "/" + args.get
        status, headers, body = asyncio.run(call(app, "GET", target))
        print(describe_response(status, headers, body))
        return EXIT_OK if 200 <= status < 300 else EXIT_FAIL
    import uvicorn
    from threadpoolctl import threadpool_limits

    # One BLAS thread per request: the server answers many requests at once on its own threads,
    # and each nearest-sounds scan asking the BLAS for all cores made 20 concurrent clients wait
    # on each other (p50 714 ms against 75 ms; benchmarks/RESULTS.md, bench_scale at 10k).
    threadpool_limits(1, user_api="blas")
    # Requests run on a pool of threads that share the GIL: the default 5 ms between switches
    # kept a finished request waiting behind others' work. 0.5 ms: neighbours at 1M under 20
    # clients p99 137-139 -> 118-123 ms, p50 unchanged (benchmarks/RESULTS.md, 1M section).
    sys.setswitchinterval(0.0005)
    # Each server thread would get a malloc arena of its own, and their free memory is not
    # returned: RSS crept by 55 MB over the second five minutes of a soak with renders, and by
    # 10 MB with two arenas, at the same throughput (benchmarks/RESULTS.md, the soak).
    limit_malloc_arenas(2)
    # Long-lived objects out of the collector's sight (``WebState.freeze_gc``): those of the
    # app now, and those of each index when it is built.
    app.state.web.freeze_gc = True
    gc.collect()
    gc.freeze()

    if not loopback:
        print(f"soundatlas serve: warning: {args.host} is not a loopback address: anyone who can "
              "reach this machine can read the library's files", file=sys.stderr)
    sock = _listening_socket(args.host, args.port)
    port = sock.getsockname()[1]  # --port 0: the free port the system chose
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {atlas_dir(args)} at http://{shown}:{port}/ "
          f"(API: http://{shown}:{port}/docs); Ctrl-C stops", flush=True)
    web = app.state.web
    if web.osc_out is not None:
        print(f"OSC out: the page's hover, select, play and selection go to {web.osc_out.endpoint}")
    if web.osc_in is not None:
        print(f"OSC in: listening on {web.osc_in.endpoint} for /soundatlas/cursor x y z, "
              "/soundatlas/cursor/norm u v w, /soundatlas/play id, /soundatlas/select id")

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):  # Ctrl-C: end the page's event streams first
            end_streams(app)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            timeout_graceful_shutdown=2)
    try:
        Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn raises the Ctrl-C again once it has stopped cleanly
        pass
    print("stopped")
    return EXIT_OK


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``serve`` (see :mod:`soundatlas.cli`)."""
    _add_serve(sub, parents)


def limit_malloc_arenas(n: int) -> bool:
    """Ask glibc's allocator for at most ``n`` arenas (``mallopt(M_ARENA_MAX, n)``) before the
    server's threads start; what the environment's ``MALLOC_ARENA_MAX`` would do, for a
    process already running.

    Returns
    -------
    bool
        True when glibc took it; False elsewhere (another C library, not Linux).
    """
    import ctypes
    import ctypes.util

    m_arena_max = -8  # malloc.h
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(m_arena_max, int(n)))
    except (OSError, AttributeError):
        return False
