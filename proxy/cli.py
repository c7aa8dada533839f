"""The ``adaptive-proxy`` command line: the only place that reads argv and the environment.

Commands: ``serve``, ``check``, ``learn``, ``demo``, ``replay-upstream``, ``predictor …``,
``bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from proxy.config.defaults import default_config_text
from proxy.config.schema import Config, empty_policies_problems, load_config, load_config_text
from proxy.wire.errors import ConfigError, PredictorLoadError
from recorded_data import RecordedDataError

log = logging.getLogger("adaptive_proxy")


def _setup_logging(level: str, *, with_pid: bool = False) -> None:
    # Workers of ``serve --workers`` share one stderr: each line says which process wrote it.
    where = "%(name)s[%(process)d]" if with_pid else "%(name)s"
    # The format shows no caller, thread or task: do not collect them for every record (the
    # logging HOWTO's "Optimization"); the access log writes one record per request.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging.logProcesses = with_pid
    if hasattr(logging, "logAsyncioTasks"):  # Python 3.12+
        logging.logAsyncioTasks = False
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {where}: %(message)s",
    )


def _prepare_environment() -> None:
    # litellm must never fetch its price map; it reads this when (lazily) imported.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def raise_open_file_limit(max_connections: int) -> int:
    """Raise the soft open-file limit to the hard limit; returns the soft limit now in force.

    Every client connection, upstream connection and Redis connection is a descriptor; the
    common default soft limit (1,024) runs out long before the connection cap, and accept()
    then fails without an HTTP answer. Warns when ``max_connections`` does not fit.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    # Headroom for upstream and Redis connections, the config file, the model files.
    if soft != resource.RLIM_INFINITY and max_connections > soft - 256:
        log.warning(
            "server.max_connections (%d) is close to the open-file limit (%d): connections "
            "may fail before the cap answers 503; raise the limit (ulimit -n) or lower the cap",
            max_connections,
            soft,
        )
    return int(soft)


def _load(path: str | None) -> Config:
    if path is None:
        return load_config_text(default_config_text(), env=os.environ, source="<embedded default>")
    return load_config(path, env=os.environ)


async def serve_until_stopped(
    config: Config,
    *,
    host: str,
    port: int,
    config_path: str | None,
    reuse_port: bool = False,
) -> None:
    """Run the proxy until SIGINT/SIGTERM; SIGHUP reloads the policy file."""
    from proxy.http.app import create_app
    from proxy.http.server import start_site
    from proxy.http.state import CONFIG

    app = create_app(config, config_path=config_path, env=os.environ)
    site = await start_site(app, host, port, reuse_port=reuse_port)
    # Startup objects (config, models, modules) live forever: keep the collector off them.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    holder = app[CONFIG]
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(holder.reload()))
    policies = ", ".join(config.policies) or "none"
    log.info("adaptive-proxy serving policies [%s] on http://%s:%d/v1", policies, host, port)
    try:
        await stop.wait()
    finally:
        log.info(
            "shutting down: draining for at most %g s (server.shutdown_timeout_s)",
            config.server.shutdown_timeout_s,
        )
        await site.close()


def _cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    # The rule the hot reload and ``check`` apply: serve starts only on a file they accept.
    problems = empty_policies_problems(config)
    if problems:
        raise ConfigError(problems, source=args.config)
    worker = args.worker_index is not None
    _setup_logging(config.server.log_level, with_pid=worker)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    raise_open_file_limit(config.server.max_connections)
    with _learner_child(args.config, enabled=args.learn and not worker):
        return _serve(args, config, host=host, port=port, worker=worker)


#: How long ``serve --learn`` waits for its learner to finish a refit after SIGTERM.
LEARNER_STOP_TIMEOUT_S = 60.0


@contextmanager
def _learner_child(config_path: str | None, *, enabled: bool) -> Iterator[None]:
    """``serve --learn``: the learner in a child process beside the server, stopped with it.

    A process of its own, so that its fits never share the serving event loop (nor its GIL).
    """
    if not enabled:
        yield
        return
    from proxy.learn.process import learn_command

    child = subprocess.Popen([sys.executable, "-m", "proxy.cli", *learn_command(config_path)])
    log.info("learner started beside the server (pid %d)", child.pid)
    try:
        yield
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=LEARNER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("learner pid %d did not stop in time; killed", child.pid)
            child.kill()
            child.wait()
        log.info("learner pid %d stopped (status %s)", child.pid, child.returncode)


def _serve(args: argparse.Namespace, config: Config, *, host: str, port: int, worker: bool) -> int:
    if args.workers > 1:
        from proxy.http.workers import run_workers

        return run_workers(
            args.workers, config=config, config_path=args.config, host=host, port=port
        )
    _install_uvloop()
    try:
        asyncio.run(
            serve_until_stopped(
                config, host=host, port=port, config_path=args.config, reuse_port=worker
            )
        )
    except PredictorLoadError as exc:
        print(f"adaptive-proxy: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"adaptive-proxy: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from proxy.decide.file_check import check_policy_file

    config, problems = check_policy_file(args.config, env=os.environ)
    if problems or config is None:
        raise ConfigError(problems, source=str(Path(args.config)))
    print(
        f"{args.config or '<embedded default>'}: OK — {len(config.upstreams)} upstream(s), "
        f"{len(config.policies)} polic{'y' if len(config.policies) == 1 else 'ies'}, "
        f"predictor {config.predictor.type} verified"
    )
    for name, policy in config.policies.items():
        print(f"  policy {name}: {policy.type} (version {config.policy_version(name)})")
    auth = config.server.auth
    missing = sorted(
        {
            u.api_key_env
            for u in config.upstreams.values()
            if u.api_key_env and u.api_key_env not in os.environ
        }
    )
    for var in missing:
        print(
            f"  warning: environment variable {var} is not set (its upstream will get no API key)"
        )
    if auth is None:
        print("  warning: no server.auth: the proxy will serve every request without a key")
    elif not auth.secrets(os.environ):
        print(
            f"  warning: none of {', '.join(auth.master_key_envs)} is set; "
            "serve will refuse to start"
        )
    return 0


def _cmd_learn(args: argparse.Namespace) -> int:
    from proxy.learn.process import rollback_policy
    from proxy.learn.wiring import prior_version

    config = _load(args.config)
    _setup_logging(config.server.log_level, with_pid=args.stop_with_parent)
    if args.rollback is not None:
        try:
            before, now = asyncio.run(rollback_policy(config, args.rollback, env=os.environ))
        except KeyError as exc:
            print(f"adaptive-proxy: {exc.args[0]}", file=sys.stderr)
            return 2
        was = before or prior_version(config)
        print(f"{args.rollback}: rolled back from {was} to {now}")
        return 0
    return asyncio.run(
        _learn_until_stopped(config, once=args.once, with_parent=args.stop_with_parent)
    )


async def _learn_until_stopped(config: Config, *, once: bool, with_parent: bool) -> int:
    """The learner loop until SIGINT/SIGTERM (a refit under way finishes first)."""
    from proxy.learn.process import run_learner, stop_with_parent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        if not stop.is_set():
            log.info("learner: stopping (after the refit under way, if any)")
        stop.set()

    loop.add_signal_handler(signal.SIGINT, request_stop)
    loop.add_signal_handler(signal.SIGTERM, request_stop)
    watcher = asyncio.create_task(stop_with_parent(stop)) if with_parent else None
    try:
        return await run_learner(config, stop=stop, once=once, env=os.environ)
    finally:
        stop.set()
        if watcher is not None:
            await watcher


def _cmd_demo(args: argparse.Namespace) -> int:
    from proxy.demo import run_demo

    _setup_logging("warning")
    # The demo's proxy serves only the demo's own requests on loopback: "open" is no news.
    logging.getLogger("adaptive_proxy.auth").setLevel(logging.ERROR)
    return asyncio.run(
        run_demo(data_dir=Path(args.data_dir) if args.data_dir else None, config_path=args.config)
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="adaptive-proxy", description="OpenAI-compatible proxy that learns how hard to think."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the proxy")
    serve.add_argument("--config", help="policy YAML (default: the embedded demo policy)")
    serve.add_argument(
        "--host", default=None, help="listen address (default: server.host or 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=None, help="listen port (default: server.port or 8080)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes serving one port (SO_REUSEPORT), each with its own event loop",
    )
    # Set by ``--workers`` for each worker it starts: bind with SO_REUSEPORT.
    serve.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    serve.add_argument(
        "--learn",
        action="store_true",
        help="also run the learner (adaptive-proxy learn) in a child process, stopped with "
        "the server",
    )
    serve.set_defaults(func=_cmd_serve)

    learn = sub.add_parser(
        "learn",
        help="refit the learn: true policies' heads from the outcome log, promote, roll back",
    )
    learn.add_argument("--config", help="policy YAML (default: the embedded demo policy)")
    learn.add_argument(
        "--rollback",
        metavar="POLICY",
        default=None,
        help="return POLICY to its previous version (or the shipped prior), print which, exit",
    )
    learn.add_argument(
        "--once", action="store_true", help="one refit pass over the policies (when due), then exit"
    )
    # Set by ``serve --learn``: stop when the server that started this process is gone.
    learn.add_argument("--stop-with-parent", action="store_true", help=argparse.SUPPRESS)
    learn.set_defaults(func=_cmd_learn)

    check = sub.add_parser("check", help="validate a policy file and explain every problem")
    check.add_argument("--config", required=True, help="policy YAML")
    check.set_defaults(func=_cmd_check)

    demo = sub.add_parser("demo", help="replay upstream + proxy + a few OpenAI SDK requests")
    demo.add_argument(
        "--data-dir",
        default=None,
        help="recorded data (default: $ADAPTIVE_DATA_DIR, else the bundled copy)",
    )
    demo.add_argument(
        "--config", default=None, help="policy YAML (default: the embedded demo policy)"
    )
    demo.set_defaults(func=_cmd_demo)

    from bench.cli import register_cli as register_bench
    from predictor_onnx.cli import register_cli as register_predictor
    from replay.server import register_cli as register_replay

    register_replay(sub)
    register_predictor(sub)
    register_bench(sub)
    return parser


#: The status of a program ended by SIGPIPE (128 + 13), as ``yes | head`` leaves it.
EXIT_BROKEN_PIPE = 141


def _stdout_closed() -> int:
    """The reader of stdout went away (``adaptive-proxy check … | head``): exit quietly.

    Python ignores SIGPIPE, so the write raised instead; stdout now points at /dev/null so the
    interpreter's last flush at exit cannot raise again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``adaptive-proxy``."""
    _prepare_environment()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args))
        # Inside the try: output still buffered meets a closed pipe here, not at exit.
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except RecordedDataError as exc:
        print(f"adaptive-proxy: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
