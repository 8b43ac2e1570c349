"""Does a push by the module wake a BLPOP / BLMOVE waiter at once?"""
import sys, threading, time
import redis

port = int(sys.argv[1])
for cmd in ("SIMCTL.PUSHL", "SIMCTL.PUSHC", "RPUSH"):
    for block in ("BLPOP", "BLMOVE"):
        r = redis.Redis(port=port); w = redis.Redis(port=port)
        r.delete("wq", "wdst")
        out = {}
        def waiter():
            t0 = time.perf_counter()
            if block == "BLPOP":
                out["v"] = w.blpop(["wq"], timeout=5)
            else:
                out["v"] = w.blmove("wq", "wdst", 5, "LEFT", "RIGHT")
            out["t"] = time.perf_counter() - t0
        th = threading.Thread(target=waiter); th.start(); time.sleep(0.2)
        r.execute_command(cmd, "wq", "hello"); th.join()
        print(f"port {port} {cmd:13s} wakes {block:6s}: got {out['v']} after {out['t']*1000:.0f} ms (push 200 ms after the wait began)")
