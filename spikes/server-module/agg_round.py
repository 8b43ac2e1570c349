import collections, sys
d = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    pin, port, rep, var, p50, p90 = line.split()
    d[(pin, "redis7.0" if port == "17701" else "valkey9.1")][var].append(float(p50.split("=")[1]))
for k, v in d.items():
    print(" / ".join(k))
    for var, xs in v.items():
        r = [a / b for a, b in zip(xs, v["relay"])]
        print(f"  {var:14s} p50 {min(xs):6.1f}-{max(xs):6.1f} us   x relay {min(r):.2f}-{max(r):.2f}   "
              f"minus relay {min(a-b for a,b in zip(xs, v['relay'])):+.1f}..{max(a-b for a,b in zip(xs, v['relay'])):+.1f} us")
