#!/usr/bin/env python3
"""A session workload for the key-rotation test: USERS browsers (one cookie
jar each) ask the express-session example for its counter, together at about
RATE requests a second, until STOP_FILE exists (or MAX_SECONDS pass). Every
answer must be 200 with "Counter: N", N one more than that browser's last:
a session that was lost (did not open) starts again at 1 and is a failure.
Prints one JSON object: requests, failures (with the first few reasons),
each user's requests and last counter, and the achieved rate."""
import http.cookiejar
import json
import os
import sys
import threading
import time
import urllib.request

port, users, rate, stop_file = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
MAX_SECONDS = 120

lock = threading.Lock()
result = {"requests": 0, "failures": 0, "errors": 0, "lost": 0, "reasons": [], "users": []}


def fail(why, kind):
    """kind: "errors" (the request failed: nothing was acknowledged) or
    "lost" (a counter went back: an acknowledged write was lost)."""
    with lock:
        result["failures"] += 1
        result[kind] += 1
        if len(result["reasons"]) < 10:
            result["reasons"].append(why)


def browser(n):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    interval = users / rate
    done, last = 0, 0
    deadline = time.monotonic() + MAX_SECONDS
    next_at = time.monotonic()
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        try:
            with opener.open(f"http://127.0.0.1:{port}/", timeout=5) as r:
                body = r.read().decode()
                if r.status != 200 or not body.startswith("Counter: "):
                    fail(f"user {n}: {r.status} {body[:80]}", "errors")
                else:
                    count = int(body.split()[1])
                    if count != last + 1:
                        fail(f"user {n}: counter {count} after {last}", "lost")
                    last = count
        except Exception as e:  # noqa: BLE001 - every failure is counted
            fail(f"user {n}: {type(e).__name__}: {e}", "errors")
        done += 1
        with lock:
            result["requests"] += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    with lock:
        result["users"].append({"requests": done, "last": last})


start = time.monotonic()
threads = [threading.Thread(target=browser, args=(i,)) for i in range(users)]
for t in threads:
    t.start()
# Progress for the test driving the load: requests so far, every 0.1 s.
progress = stop_file + ".progress"
while any(t.is_alive() for t in threads):
    with lock:
        done = result["requests"]
    with open(progress + ".tmp", "w") as f:
        f.write(str(done))
    os.replace(progress + ".tmp", progress)
    time.sleep(0.1)
for t in threads:
    t.join()
result["seconds"] = round(time.monotonic() - start, 2)
result["rate"] = round(result["requests"] / max(result["seconds"], 0.001), 1)
print(json.dumps(result))
