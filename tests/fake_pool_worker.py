"""A stand-in for ``python -m cifar_utils.runs.pool`` that speaks its protocol in milliseconds:
what it does with a task depends on the task's seed, so a test can make a worker finish,
fail, stop itself with SIGSTOP (a hung worker), stay silent while it beats, or print a run's
progress line as the training code does (``runs.progress``, no backend imported)."""

import json
import os
import signal
import sys
import time

from fake_attempts import record_attempt

CONTROL = "@@pool "


def say(payload: dict) -> None:
    print(CONTROL + json.dumps(payload), flush=True)


def main() -> None:
    for line in sys.stdin:
        task = json.loads(line)
        seed, number = task["seed"], record_attempt(task["out_dir"], task["seed"])
        print(f"exp 2 seed {seed}: epoch 1/1", flush=True)
        if seed == 1 and number == 1 or seed == 2:  # 1 hangs once, 2 every time
            os.kill(os.getpid(), signal.SIGSTOP)
        if seed == 3:  # silent but alive: heartbeats only, for 4 s
            for _ in range(20):
                say({"beat": True})
                time.sleep(0.2)
        if seed == 4:  # a progress line in words no driver knows, beside a library's chatter
            from cifar_utils.runs import progress

            progress.say(f"exp 2 seed {seed}", "words no driver knows")
            print("some library: chatter", flush=True)
        if seed == 5:
            say({"ok": False, "detail": "CifarDataError: fake failure"})
            continue
        say({"ok": True, "detail": "completed, test acc 10.00 %"})


if __name__ == "__main__":
    main()
