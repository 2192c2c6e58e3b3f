"""The scoring commands of ``rnnlm``: score and rank sentences, rescore n-best lists, attach
or export a model's n-gram part (an ARPA file).

    rnnlm rescore news nbest.txt -o rescored.txt          # adds RNNLM0= to every line
    rnnlm rescore news nbest.txt --weight 0.5 > best.txt  # ... and re-ranks each list
    rnnlm attach-arpa news news.arpa                      # a new version with that n-gram part
    rnnlm export-arpa news -o news.arpa
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from typing import IO, Any

from rnnlm.client import _output as out
from rnnlm.client._common import SENTENCES_PER_REQUEST, ScoreOptions
from rnnlm.client._files import DownloadSink
from rnnlm.client.cli_errors import positive_int
from rnnlm.client.nbest import FORMATS, check_feature_name
from rnnlm.client.sync import LMClient
from rnnlm.client.types import ModelVersion

RESCORE_EPILOG = """\
Formats: Moses ("id ||| hypothesis ||| features ||| total [||| ...]") or plain text (one
hypothesis a line, optionally "id<TAB>hypothesis"; lines without an id form one list).
Each line is written back byte for byte with the feature added: Moses at the end of the
features ("... RNNLM0= -23.456 ||| total"), plain as a TAB and the value at the end. The
value is ln p of the hypothesis (as Moses writes LM features), log10 p with --log10.
The total is kept unless --update-total; the order is kept unless --weight is given, which
sorts each list (consecutive lines with one id) by total + W * value, ties in input order.
A line that does not parse stops the command with its line number (exit 1); with -o the
output file is only written when every line was rescored."""


def add_score_flags(p: argparse.ArgumentParser, *, ranking: bool) -> None:
    """Which model scores and what counts: the flags of score, rank and rescore."""
    p.add_argument(
        "--scorer",
        choices=["neural", "ngram", "interpolated"],
        help="which model scores (default: interpolated when the model has an n-gram part)",
    )
    p.add_argument(
        "--neural-weight",
        type=float,
        metavar="L",
        help="interpolated: the network's weight in [0, 1] (default: the tuned one)",
    )
    for name, text in (
        ("bos", "the text is a fragment: its first word is context only"),
        ("eos", "leave out the probability of the sentence's end"),
    ):
        p.add_argument(f"--no-{name}", dest=name, action="store_false", default=None, help=text)
    if ranking:
        p.add_argument(
            "--length-norm",
            choices=["none", "average", "gnmt"],
            help="rank by logprob (none, default), by its mean per token, or GNMT's penalty",
        )
        p.add_argument("--length-alpha", type=float, help="gnmt: the penalty's alpha (0.6)")


def add_batch_size(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=SENTENCES_PER_REQUEST,
        help=f"{what} per request (default {SENTENCES_PER_REQUEST}, the server's default "
        "limit); any number are sent, this many at a time",
    )


def score_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ScoreOptions that the command has flags for."""
    names = (f.name for f in dataclasses.fields(ScoreOptions))
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the commands with the parser's ``command(name, func, help, **kw)``."""
    for name, text in (
        ("score", "score sentences: log10 p, perplexity, unknown words"),
        ("rank", "rank candidate sentences, most probable first"),
    ):
        p = command(name, cmd_score, text)
        p.add_argument("model")
        p.add_argument("sentences", nargs="*", metavar="SENTENCE", help="default: stdin lines")
        p.add_argument("--file", help="read sentences from this file, one per line")
        p.add_argument("--tokens", action="store_true", help="per-token log-probabilities too")
        add_score_flags(p, ranking=True)
        add_batch_size(p, "sentences")

    p = command(
        "rescore",
        cmd_rescore,
        "add the model's score as a feature to each line of an n-best list",
        epilog=RESCORE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model")
    p.add_argument("file", nargs="?", default="-", help="the n-best list (default '-': stdin)")
    p.add_argument("-o", "--output", help="write to this file (default: stdout)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="default: auto-detect")
    p.add_argument("--feature", default="RNNLM0", help="the feature's name (default RNNLM0)")
    p.add_argument("--weight", type=float, metavar="W", help="re-rank by total + W * score")
    p.add_argument(
        "--update-total",
        action="store_true",
        help="write total + W * score as the new total (needs --weight; default: keep it)",
    )
    p.add_argument("--log10", action="store_true", help="log10 p instead of ln p")
    add_score_flags(p, ranking=False)
    add_batch_size(p, "hypotheses")

    p = command("attach-arpa", cmd_attach_arpa, "upload an ARPA file as a model's n-gram part")
    p.add_argument("model")
    p.add_argument("arpa_file", help="an ARPA n-gram model (e.g. from KenLM's lmplz)")
    p.add_argument(
        "--neural-weight", type=float, metavar="L", help="the network's weight (default: tuned)"
    )
    p = command("export-arpa", cmd_export_arpa, "write a model's n-gram part as an ARPA file")
    p.add_argument("model")
    p.add_argument("-o", "--output", help="write to this file (default: stdout)")
    p.add_argument("--version", type=int, default=0, help="model version (default: current)")


# -- commands ----------------------------------------------------------------------------


def _read_sentences(args: argparse.Namespace) -> list[str]:
    """The sentences to score: the arguments, or the lines of --file or stdin ('-'), blank
    lines left out."""
    if args.sentences and args.file:
        raise ValueError("give the sentences as arguments or with --file, not both")
    if args.sentences and args.sentences != ["-"]:
        return list(args.sentences)
    if args.file and args.file != "-":
        with open(args.file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    else:
        if sys.stdin.isatty():
            out.eprint("reading sentences from stdin, one per line (Ctrl-D ends)")
        lines = sys.stdin.read().splitlines()
    sentences = [line.strip() for line in lines if line.strip()]
    if not sentences:
        raise ValueError("no sentences given (as arguments, with --file, or on stdin)")
    return sentences


def cmd_score(args: argparse.Namespace, client: LMClient) -> int:
    sentences = _read_sentences(args)
    ranked = args.command == "rank"
    result = client.score(
        args.model,
        sentences,
        rank=ranked,
        omit_tokens=not args.tokens,
        batch_size=args.batch_size,
        **score_options(args),
    )
    scorer: dict[str, Any] = {"scorer": result.scorer} if result.scorer else {}
    if result.neural_weight is not None:
        scorer["neural_weight"] = result.neural_weight
    if args.json:
        for r, s in enumerate(result.scores, 1):
            extra = {"rank": r} if ranked else {}
            print(out.to_json(s, **extra, sentence=sentences[s.index], **scorer))
        return 0
    normalised = args.length_norm not in (None, "none")
    print(
        out.scores_table(
            result.scores, sentences, ranked=ranked, tokens=args.tokens, rank_score=normalised
        )
    )
    if result.scorer not in (None, "neural"):
        weight = result.neural_weight
        shown = f" (neural weight {weight:.4g})" if weight is not None else ""
        out.eprint(f"scored by: {result.scorer}{shown}")
    return 0


def cmd_rescore(args: argparse.Namespace, client: LMClient) -> int:
    if args.update_total and args.weight is None:
        raise ValueError("--update-total needs --weight: the new total is total + W * score")
    check_feature_name(args.feature)  # before the input is opened
    started, count = time.monotonic(), 0
    with ExitStack() as stack:
        source = (
            sys.stdin.buffer if args.file == "-" else stack.enter_context(open(args.file, "rb"))
        )
        sink = stack.enter_context(DownloadSink(args.output or sys.stdout.buffer))
        bar = stack.enter_context(_progress_bar(args.file))
        names = ("feature", "weight", "log10", "format", "batch_size")
        settings = {name: getattr(args, name) for name in names}
        results = client.rescore_stream(source, args.model, **settings, **score_options(args))
        for item in stack.enter_context(closing(results)):
            sink.write(item.line(args.update_total).encode())
            count += 1
            bar.update()
    elapsed = time.monotonic() - started
    rate = count / max(elapsed, 1e-9)
    out.eprint(f"rescored {out.plural(count, 'line')} in {elapsed:.1f}s ({rate:,.0f}/s)")
    return 0


def _progress_bar(path: str) -> Any:
    """A tqdm bar on stderr when it is a terminal (none in a pipe or a log), out of the
    file's line count when the input is a regular file."""
    from tqdm import tqdm  # only this command needs it

    tty = sys.stderr.isatty()
    total = _count_lines(path) if tty and path != "-" and os.path.isfile(path) else None
    return tqdm(total=total, unit=" lines", file=sys.stderr, disable=not tty, mininterval=0.25)


def _count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def cmd_attach_arpa(args: argparse.Namespace, client: LMClient) -> int:
    info = client.attach_ngram(args.model, args.arpa_file, neural_weight=args.neural_weight)
    current = info.current
    text = f"model {info.model_id} version {info.current_version}"
    out.say(args.json, text + (f": {version_ngram(current)}" if current else ""), info)
    return 0


def cmd_export_arpa(args: argparse.Namespace, client: LMClient) -> int:
    target: str | IO[bytes] = args.output or sys.stdout.buffer
    size = client.export_arpa(args.model, target, version=args.version)
    if args.output:
        out.eprint(f"wrote {size:,} bytes to {args.output}")
    return 0


def version_ngram(v: ModelVersion) -> str:
    """The n-gram part of a version in words."""
    if not v.ngram_order:
        return "no n-gram part"
    parts = [f"{v.ngram_order}-gram from {v.ngram_source or 'unknown'}"]
    parts.append(f"neural weight {v.neural_weight:.4g}")
    for name, ppl in (
        ("valid ppl: network", v.valid_perplexity),
        ("n-gram", v.ngram_valid_perplexity),
        ("interpolated", v.interpolated_valid_perplexity),
    ):
        if ppl is not None:
            parts.append(f"{name} {ppl:.1f}")
    return ", ".join(parts)
