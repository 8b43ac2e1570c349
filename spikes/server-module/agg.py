import collections, re, sys
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for f in sys.argv[1:]:
    for line in open(f):
        p = line.rstrip("\n").split("\t")
        tag, port, mode, rep, name = p[:5]
        kv = dict(x.split("=", 1) for x in p[5:9])
        srv = "redis7.0" if port == "17701" else "valkey9.1"
        grp = (srv, mode, re.sub(r"2[ab]$", "2", tag))
        rows[grp][name].append((float(kv["p50_us"]), float(kv["usec_per_call"])))
for grp, d in rows.items():
    base = d["SET"]
    print(" / ".join(grp))
    for name, v in d.items():
        p50 = [x[0] for x in v]; u = [x[1] for x in v]
        # ratio to SET in the same rep (same index)
        rat = [a[0] / b[0] for a, b in zip(v, base)]
        print(f"  {name:15s} p50 {min(p50):6.1f}-{max(p50):6.1f} us  x SET {min(rat):.2f}-{max(rat):.2f}"
              f"   usec_per_call {min(u):5.2f}-{max(u):5.2f}")
