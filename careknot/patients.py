"""``careknot patient forget PATIENT``: crypto-shredding of a patient's sealed fields."""

from __future__ import annotations

import argparse
import getpass
import time

from adapters.storage.postgres import Database
from kernel.settings import Settings


async def run(settings: Settings, args: argparse.Namespace) -> int:
    actor = args.actor or f"cli:{getpass.getuser()}"
    async with Database(settings) as db:
        forgotten = await db.forget_patient(args.patient, actor, time.time())
    if not forgotten:
        print(f"no patient {args.patient}")
        return 1
    print(f"patient {args.patient} forgotten: her data key is deleted, her name can never be read")
    return 0
