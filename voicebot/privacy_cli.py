"""`voicebot privacy ...`: key rotation, and a caller's export and erasure, from the shell.

Run these with the server stopped (rotation rewrites every sealed value), or,
for export and erase, at any time: SQLite serialises the writers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from voicebot.config import Settings
from voicebot.errors import ConfigError, StoreUnavailable
from voicebot.staff.shell import Stores, erase_from_shell


def add_privacy_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    privacy = sub.add_parser("privacy", help="keys, and a caller's data (export, erase)")
    privacy.add_argument("--config", help="TOML settings file")
    actions = privacy.add_subparsers(dest="action", required=True)
    actions.add_parser("rotate-key", help="re-encrypt everything stored under a new key "
                       "(stop the server first)")
    export = actions.add_parser("export", help="a caller's calls as portable JSON on stdout")
    export.add_argument("--caller", required=True, help="the caller's number")
    erase = actions.add_parser("erase", help="erase every call from a number")
    erase.add_argument("--caller", required=True, help="the caller's number")


def run_privacy(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return asyncio.run(_run(args, settings))
    except (ConfigError, StoreUnavailable, ValueError) as exc:
        print(f"voicebot privacy: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "rotate-key":
        return await rotate_key(settings)
    caller = args.caller.strip()
    if not caller:
        raise ValueError("give the caller's number")
    if args.action == "export":
        from voicebot.staff.privacy import export_caller

        async with Stores(settings) as s:
            opted_out = await s.opt_outs.has(s.privacy.pseudonym(caller))
            data = await export_caller(s.calls, s.desk, caller, opted_out, s.recordings)
            await s.staff.audit("cli", "admin", "export_caller", detail=f"{len(data['calls'])} calls")
        json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return 0
    return await erase_from_shell(settings, caller)


async def rotate_key(settings: Settings) -> int:
    from voicebot.privacy.crypto import FieldPrivacy
    from voicebot.privacy.keys import KeySet, load_keys, new_root, pending_path, read_key_file, write_key_file
    from voicebot.storage.sealed import seal_item, seal_row, unseal_item, unseal_row

    journal = Path(settings.journal_path)
    if journal.exists() and journal.stat().st_size:
        raise ValueError(f"{journal} holds writes not yet in the database: start the server "
                         "once so it replays them, stop it, then rotate")
    keys = load_keys(settings.secret_key, Path(settings.key_path), settings.previous_secret_key,
                     settings.pseudonym_key)
    key_file, pending = Path(settings.key_path), pending_path(Path(settings.key_path))
    if not settings.secret_key:  # the new root waits beside the old until all is under it
        if not pending.exists():
            write_key_file(pending, new_root())
        new = read_key_file(pending)
        keys = KeySet(new, (keys.current, *[r for r in keys.previous if r != new]),
                      pseudonym_root=keys.pseudonym_root)
    elif not keys.previous:
        raise ValueError("with VOICEBOT_SECRET_KEY, set the new key there and the old one in "
                         "VOICEBOT_PREVIOUS_SECRET_KEY, then rotate")
    p = FieldPrivacy(keys)
    started = time.perf_counter()
    async with Stores(settings, p) as s:
        n = await s.backend.rewrite(lambda row: seal_row(p, unseal_row(p, row)),
                                    lambda kind, item: seal_item(p, kind, unseal_item(p, kind, item)),
                                    lambda value: p.seal(p.unseal(value)))
        await s.desk.rewrite(lambda value: p.seal(p.unseal(value)))
        recorded = await s.recordings.rewrite()
        await s.staff.audit("cli", "admin", "rotate_key",
                            detail=f"{n} calls, {recorded} recordings, key {p.key_id}")
    if not settings.secret_key:
        os.replace(pending, key_file)
    print(f"re-encrypted {n} calls under key {p.key_id} in {time.perf_counter() - started:.1f} s"
          + ("" if not settings.secret_key else "; now unset VOICEBOT_PREVIOUS_SECRET_KEY"),
          file=sys.stderr)
    return 0
