"""The ``rnnlm`` command: train models on a server, watch jobs, score, rank and generate.

    rnnlm train news corpus.txt --cell gru --hidden-size 256 --epochs 5
    rnnlm rank news "the cat sat on the mat ." "mat the on sat cat the ."
    rnnlm generate news -n 3 --seed 1
    rnnlm rescore news nbest.txt -o rescored.txt   # add RNNLM0= to a Moses n-best list
    rnnlm serve --help              # start a server (needs the rnnlm[server] extra)
    rnnlm demo                      # a server, training, ranking and generation in one go
    rnnlm health --wait 30          # exit 0 once the server answers SERVING
    rnnlm corpora; rnnlm delete-corpus ID; rnnlm delete-job ID   # free the store

Exit codes: 0 success; 1 any error (a bad command line, a failed call, a training job that
did not complete), printed as one line on stderr; 130 interrupted (Ctrl-C while watching a
job detaches from it; the job keeps running).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

from rnnlm.client import _output as out
from rnnlm.client import cli_errors as errors
from rnnlm.client import cli_plots as plotting
from rnnlm.client import cli_reports as reports
from rnnlm.client import cli_scoring as scoring
from rnnlm.client import cli_training as training
from rnnlm.client._common import DEFAULT_TARGET, TLS
from rnnlm.client._output import eprint
from rnnlm.client.errors import RnnlmError
from rnnlm.client.nbest import NBestFormatError
from rnnlm.client.sync import LMClient

# Commands whose output is a file (or a server): no --json. Every other one prints JSON for
# scripts with --json: one object, or one a line for a listing or a stream.
WRITES_FILES = ("serve", "demo", "rescore", "export-arpa", "plot")
JSON_HELP = "JSON for scripts instead of text for people (one object a line)"

# Options of generate_stream, each a flag of its own (dest: the parameter's name).
GENERATE_FLAGS = ["num_sentences", "min_tokens", "max_tokens", "temperature", "top_k", "top_p"]
GENERATE_FLAGS += ["seed", "method", "beam_width"]


# -- commands: each takes the parsed arguments and a client, and returns the exit code ---


def cmd_generate(args: argparse.Namespace, client: LMClient) -> int:
    params = {name: getattr(args, name) for name in GENERATE_FLAGS}
    if args.json:
        for s in client.generate(args.model, args.prompt, **params):
            print(out.to_json(s, logprob=s.logprob), flush=True)
        return 0
    printer = out.SentencePrinter(sys.stdout, args.prompt)
    with closing(client.generate_stream(args.model, args.prompt, **params)) as stream:
        try:
            for token in stream:
                printer.add(token)
        finally:
            printer.close()
    return 0


def cmd_models(args: argparse.Namespace, client: LMClient) -> int:
    return out.print_listing(client.models(), args.json, out.models_table)


def cmd_model(args: argparse.Namespace, client: LMClient) -> int:
    model = client.model(args.model, include_vocabulary=args.vocabulary)
    out.say(args.json, out.model_view(model), model)
    return 0


def cmd_delete(args: argparse.Namespace, client: LMClient) -> int:
    versions = client.delete_model(args.model)
    text = f"deleted model {args.model} ({out.plural(versions, 'version')})"
    out.say(args.json, text, {"model_id": args.model, "versions_deleted": versions})
    return 0


def cmd_health(args: argparse.Namespace, client: LMClient) -> int:
    """Exit 0 when SERVING (the container health check); with --wait, poll until then."""
    deadline = time.monotonic() + args.wait
    while True:
        try:
            status = client.health(args.service)
        except RnnlmError as err:
            if time.monotonic() >= deadline:
                raise
            status = f"{err.code.name}: {err.details}"
        if status == "SERVING" or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    out.say(args.json, status, {"status": status})
    return 0 if status == "SERVING" else 1


# `demo` and `serve` start a server in this process: the client's only imports of the server
# (DESIGN.md section 1), named one by one in pyproject's import-linter contract, and made
# when the command runs so that importing the client never loads torch or redis.


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from rnnlm.server.demo import local_server
    except ImportError as err:
        return _no_server(err)
    from rnnlm.client.demo import run_demo

    return run_demo(local_server, corpus=args.corpus, epochs=args.epochs, keep_dir=args.keep_dir)


def cmd_serve(argv: list[str]) -> int:
    try:
        from rnnlm.server.app import main as serve_main
    except ImportError as err:
        return _no_server(err)
    return int(serve_main(argv) or 0)


def _no_server(err: ImportError) -> int:
    eprint(f"error: cannot load the server ({err}); it needs: pip install 'rnnlm[server]'")
    return 1


# -- the parser ------------------------------------------------------------------------


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The connection options, accepted before and after the command name. Below the top
    level their defaults are suppressed, so they only override when given."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "--target",
        default=default(os.environ.get("RNNLM_TARGET") or DEFAULT_TARGET),
        help="server host:port, several separated by commas (calls go round robin), or a "
        "gRPC target such as dns:///NAME:PORT (env RNNLM_TARGET; default localhost:50051)",
    )
    parser.add_argument(
        "--timeout",
        type=errors.positive_float,
        default=default(30.0),
        help="seconds per call (default 30)",
    )
    parser.add_argument(
        "--api-key",
        default=default(os.environ.get("RNNLM_API_KEY")),
        help="key for the calls that change state, if the server requires one "
        "(env RNNLM_API_KEY; an environment variable keeps it out of `ps`)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        default=default(os.environ.get("RNNLM_TLS", "").lower() in ("1", "true", "yes", "on")),
        help="connect with TLS, trusting the system's CAs (env RNNLM_TLS=true)",
    )
    for flag, env, text in (
        ("--ca-file", "RNNLM_CA_FILE", "PEM CA that signed the server certificate (implies --tls)"),
        ("--cert-file", "RNNLM_CLIENT_CERT", "PEM client certificate, for mutual TLS"),
        ("--key-file", "RNNLM_CLIENT_KEY", "PEM key of --cert-file"),
        ("--server-name", "RNNLM_SERVER_NAME", "name to check the server's certificate against"),
    ):
        parser.add_argument(flag, default=default(os.environ.get(env)), help=f"{text} (env {env})")


def build_parser() -> argparse.ArgumentParser:
    parser = errors.Parser(
        prog="rnnlm",
        description="Train recurrent language models on an rnnlm server; score and generate.",
    )
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable, text: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, **{"description": text, **kw})
        if name not in ("serve", "demo"):
            _global_options(p, top=False)
        if name not in WRITES_FILES:
            p.add_argument("--json", action="store_true", help=JSON_HELP)
        p.set_defaults(func=func)
        return p

    serve_help = "start a server (arguments go to it; see rnnlm serve --help)"
    command("serve", cmd_serve, serve_help, add_help=False)

    training.add_commands(command)
    scoring.add_commands(command)
    plotting.add_commands(command)
    reports.add_commands(command)

    p = command("generate", cmd_generate, "generate sentences, printed as they stream")
    p.add_argument("model")
    p.add_argument("--prompt", help="words the sentences start with")
    p.add_argument(
        "-n",
        dest="num_sentences",
        metavar="N",
        type=errors.positive_int,
        default=1,
        help="sentences (default 1); beam: the N most probable, greedy: 1 only",
    )
    p.add_argument(
        "--max-tokens", type=int, default=0, help="words per sentence at most (0: the default, 50)"
    )
    p.add_argument("--min-tokens", type=int, default=0, help="words before the end may come")
    p.add_argument("--temperature", type=float, help="sampling temperature in (0, 100] (1)")
    p.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest (0: all)")
    p.add_argument("--top-p", type=float, help="nucleus sampling, in (0, 1] (1: all)")
    p.add_argument("--seed", type=int, help="makes sampling repeatable")
    p.add_argument(
        "--method",
        choices=["sample", "greedy", "beam"],
        help="sample (default), greedy (one sentence) or beam (the N most probable)",
    )
    p.add_argument(
        "--beam-width", type=int, default=0, help="beam: hypotheses kept (default max(4, N))"
    )

    p = command("models", cmd_models, "list models")
    p = command("model", cmd_model, "show a model")
    p.add_argument("model")
    p.add_argument("--vocabulary", action="store_true", help="include the vocabulary")
    command("delete", cmd_delete, "delete a model, its versions and its jobs").add_argument("model")

    p = command("health", cmd_health, "ask the gRPC health service; exit 0 when SERVING")
    p.add_argument("--service", default="", help="a service name (default: the whole server)")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to poll until SERVING")

    p = command("demo", cmd_demo, "start a server in-process, train, rank and generate")
    p.add_argument("--corpus", help="train on this text file (default: Python's help text)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--keep-dir", help="keep the model store in this directory")
    return parser


def _tls(args: argparse.Namespace) -> bool | TLS:
    files = (args.ca_file, args.cert_file, args.key_file, args.server_name)
    return TLS(*files) if any(files) else bool(args.tls)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        # parse_known_args: `serve` passes everything after it through untouched.
        args, extra = parser.parse_known_args(argv)
        if extra and hasattr(args, "sentences") and not any(e.startswith("-") for e in extra):
            # `rank MODEL "a ." --tokens "b ."`: argparse closes the positional list at the
            # first flag, so the sentences after it arrive as extras.
            args.sentences, extra = [*args.sentences, *extra], []
        if extra and args.command != "serve":
            prog = f"rnnlm {args.command}" if getattr(args, "command", None) else "rnnlm"
            errors.usage_error(f"unrecognized arguments: {' '.join(extra)[:80]}", prog)
    except SystemExit as exit:  # usage error (2) or --help (0): a code, not an exception
        return exit.code if isinstance(exit.code, int) else 0
    if args.command == "serve":
        return cmd_serve(extra)
    try:
        if args.command == "demo":
            return args.func(args)
        with LMClient(
            args.target, timeout=args.timeout, api_key=args.api_key, tls=_tls(args)
        ) as client:
            return args.func(args, client)
    except BrokenPipeError:  # `rnnlm models | head`: the reader has had enough; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (RnnlmError, NBestFormatError, OSError, TypeError, ValueError) as err:
        return errors.report(err, args.target if hasattr(args, "target") else DEFAULT_TARGET)
    except KeyboardInterrupt:
        eprint("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
