"""`voicebot flows check FILE` and `voicebot flows test FILE CASES`."""

from __future__ import annotations

import argparse
import sys

from voicebot.dialog.flow import FlowError, load_flow
from voicebot.dialog.flowcheck import check_flow, load_checked
from voicebot.dialog.flowtest import load_cases, run_cases


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    flows = sub.add_parser("flows", help="check a flow file, or run text cases against it")
    action = flows.add_subparsers(dest="flows_command", required=True)
    check = action.add_parser("check", help="validate the schema and the graph")
    check.add_argument("file")
    test = action.add_parser("test", help="run text cases (utterance -> expected outcome) offline")
    test.add_argument("file")
    test.add_argument("cases")


def run(args: argparse.Namespace) -> int:
    if args.flows_command == "check":
        return _check(args.file)
    return _test(args.file, args.cases)


def _check(path: str) -> int:
    try:
        flow = load_flow(path)
    except FlowError as exc:
        print(exc, file=sys.stderr)
        return 1
    problems = check_flow(flow)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    asks = sum(1 for n in flow.nodes.values() if n.type == "ask")
    print(f"{path}: ok ({len(flow.nodes)} nodes, {asks} questions, {len(flow.intents)} intents, "
          f"languages {', '.join(flow.languages)})")
    return 0


def _test(path: str, cases_path: str) -> int:
    try:
        flow = load_checked(path)
        cases = load_cases(cases_path)
    except (FlowError, ValueError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        results = run_cases(flow, cases)
    except ValueError as exc:
        print(f"{cases_path}: {exc}", file=sys.stderr)
        return 1
    width = max((len(r.say) for r in results), default=10)
    for r in results:
        mark = "ok  " if r.passed else "FAIL"
        print(f"{mark} {r.say:<{width}}  at {r.at}: expected {r.expect}, got {r.got}")
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0
