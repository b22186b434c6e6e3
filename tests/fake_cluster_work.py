"""A stand-in for ``cluster._train_on_worker`` that answers in milliseconds: what it does
depends on the task's seed, as in ``fake_pool_worker``; seed 7 beats for a minute. Workers
import it by name, so it imports nothing of this package."""

import json
import os
import signal
import time

from fake_attempts import record_attempt


def work(task_json: str, topic: str, key: str, token: str, echo: bool) -> dict:
    from distributed import get_worker

    task = json.loads(task_json)
    worker, seed = get_worker(), task["seed"]
    number = record_attempt(task["out_dir"], seed)
    worker.log_event(topic, {"key": key, "line": f"exp 2 seed {seed}: epoch 1/1"})
    if seed == 1 and number == 1 or seed == 2:  # 1 hangs once, 2 every time
        os.kill(os.getpid(), signal.SIGSTOP)
    for _ in range({3: 20, 7: 300}.get(seed, 0)):  # silent but alive: heartbeats only
        worker.log_event(topic, {"key": key})
        time.sleep(0.2)
    if seed == 5:
        return {"ok": False, "detail": "CifarDataError: fake failure"}
    return {"ok": True, "detail": "completed, test acc 10.00 %"}
