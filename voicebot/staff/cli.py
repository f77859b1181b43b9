"""`voicebot staff ...`: create the first accounts from the shell.

The password comes from VOICEBOT_STAFF_PASSWORD, else from a prompt when
stdin is a terminal, else from the first line of stdin, so it never appears
in the process list or the shell history.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from voicebot.config import Settings
from voicebot.errors import ConfigError

ROLES = ("agent", "supervisor", "admin")


def add_staff_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    staff = sub.add_parser("staff", help="staff desk accounts (users, API tokens)")
    staff.add_argument("--config", help="TOML settings file (for the database path)")
    actions = staff.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add-user", help="create a desk user with a password")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--token", metavar="LABEL", help="also print a new API token for them")
    token = actions.add_parser("add-token", help="print a new API token for a user")
    token.add_argument("name")
    token.add_argument("--label", default="cli")
    actions.add_parser("list", help="list users")
    erase = actions.add_parser("erase-caller", help="erase every call from a number "
                               "(a caller's request; also POST /api/privacy/erase)")
    erase.add_argument("caller", help="the caller's number as recorded, e.g. +15550123")


def run_staff(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return asyncio.run(_run(args, settings))
    except (ValueError, ConfigError) as exc:
        print(f"voicebot staff: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from voicebot.staff.auth import hash_password, new_token, user_name_problem
    from voicebot.storage.staff import StaffStore

    if args.action == "erase-caller":
        return await _erase_caller(settings, args.caller)
    store = StaffStore(settings.db)
    await store.open()
    try:
        if args.action == "list":
            for user in await store.users():
                state = " (disabled)" if user.disabled else ""
                print(f"{user.name}\t{user.role}{state}")
            return 0
        if args.action == "add-user":
            problem = user_name_problem(args.name)
            if problem:
                raise ValueError(problem)
            if await store.user(args.name) is not None:
                raise ValueError(f"user {args.name!r} exists")
            password = _password()
            await store.add_user(args.name, args.role, hash_password(password))
            print(f"created {args.name} ({args.role})", file=sys.stderr)
            label = args.token
        else:
            if await store.user(args.name) is None:
                raise ValueError(f"no user {args.name!r}")
            label = args.label
        if label:
            token, hashed = new_token()
            await store.add_credential(hashed, args.name, "api", label)
            print(token)  # shown once: only its hash is stored
        return 0
    finally:
        await store.close()


async def _erase_caller(settings: Settings, caller: str) -> int:
    from voicebot.staff.shell import erase_from_shell

    return await erase_from_shell(settings, caller)  # same as `voicebot privacy erase`


def _password() -> str:
    password = os.environ.get("VOICEBOT_STAFF_PASSWORD")
    if password is None:
        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = password.rstrip("\n")
    if len(password) < 10:
        raise ValueError("the password must be at least 10 characters")
    return password
