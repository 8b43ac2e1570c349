"""The probe simctl could run before using the module: a throwaway server on a unix socket with the module,
asked COMMAND INFO simctl.put, then SHUTDOWN NOSAVE. Prints ok/failed and the time it took."""
import os, socket, subprocess, sys, tempfile, time

server, module = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
with tempfile.TemporaryDirectory() as d:
    sock = os.path.join(d, "s")
    p = subprocess.Popen([server, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
                          "--dir", d, "--loadmodule", module], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ok = False
    while p.poll() is None:
        try:
            s = socket.socket(socket.AF_UNIX); s.connect(sock)
        except OSError:
            time.sleep(0.002); continue
        s.sendall(b"*3\r\n$7\r\nCOMMAND\r\n$4\r\nINFO\r\n$10\r\nsimctl.put\r\n")
        ok = b"simctl.put" in s.recv(65536)
        s.sendall(b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n")
        break
    out = p.communicate()[0]
why = "" if ok else [l for l in out.decode().splitlines() if "module" in l.lower()][-1:]
print(f"{os.path.basename(server)} {os.path.basename(module)}: {'ok' if ok else 'failed'} in {(time.perf_counter()-t0)*1000:.0f} ms {why}")
