"""Can simctl's member and worker (roles.RULES) run the module's commands? Rules applied with ACL SETUSER."""
import sys
import redis
from simctl.store import roles

port = int(sys.argv[1])
adm = redis.Redis(port=port)
print("categories:", redis.Redis(port=port, protocol=2).execute_command("COMMAND", "INFO", "simctl.put", NEVER_DECODE=True) if False else "")
for user in (roles.MEMBER, roles.WORKER):
    adm.execute_command("ACL", "SETUSER", user, "reset", "on", ">pw", *roles.RULES[user])
    c = redis.Redis(port=port, username=user, password="pw")
    for cmd in (("SIMCTL.PUT", "acl:k", "SMT1x", "SMT"), ("SIMCTL.PUSHL", "acl:l", "x"), ("SET", "acl:s", "1")):
        try:
            out = c.execute_command(*cmd)
        except redis.ResponseError as e:
            out = f"ERROR {e}"
        print(f"  {user} {cmd[0]}: {out}")
print(" ACL CAT write has simctl.put:", b"simctl.put" in adm.execute_command("ACL", "CAT", "write"))
