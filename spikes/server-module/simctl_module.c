/* simctl spike: SIMCTL.PUT key value stem, keyspace.PUT's logic as one module command.
 * Our own declarations of the few module-API functions used (documented names and
 * signatures, https://redis.io/docs/reference/modules/modules-api-ref/); the server hands
 * their addresses out through the GetApi pointer that is the first field of the context. */
#include <stddef.h>
/* no libc headers: gcc alone builds it (memcmp... come from the server process at load) */
#define memcmp __builtin_memcmp
#define memcpy __builtin_memcpy
#define strcpy __builtin_strcpy
#define strcat __builtin_strcat

typedef struct RedisModuleCtx RedisModuleCtx;
typedef struct RedisModuleString RedisModuleString;
typedef struct RedisModuleKey RedisModuleKey;
typedef struct RedisModuleCallReply RedisModuleCallReply;
typedef int (*RedisModuleCmdFunc)(RedisModuleCtx *ctx, RedisModuleString **argv, int argc);

#define RM_OK 0
#define RM_ERR 1
#define RM_READ (1 << 0)
#define RM_WRITE (1 << 1)
#define RM_KEYTYPE_EMPTY 0
#define RM_KEYTYPE_STRING 1
#define RM_LIST_TAIL 1
#define RM_APIVER_1 1

static int (*RedisModule_GetApi)(const char *, void *);
static int (*RedisModule_IsModuleNameBusy)(const char *name);
static int (*RedisModule_SetModuleAttribs)(RedisModuleCtx *ctx, const char *name, int ver, int apiver);
static int (*RedisModule_CreateCommand)(RedisModuleCtx *ctx, const char *name, RedisModuleCmdFunc f,
                                        const char *flags, int firstkey, int lastkey, int keystep);
static RedisModuleKey *(*RedisModule_OpenKey)(RedisModuleCtx *ctx, RedisModuleString *name, int mode);
static void (*RedisModule_CloseKey)(RedisModuleKey *key);
static int (*RedisModule_KeyType)(RedisModuleKey *key);
static char *(*RedisModule_StringDMA)(RedisModuleKey *key, size_t *len, int mode);
static int (*RedisModule_StringSet)(RedisModuleKey *key, RedisModuleString *str);
static const char *(*RedisModule_StringPtrLen)(const RedisModuleString *str, size_t *len);
static int (*RedisModule_ListPush)(RedisModuleKey *key, int where, RedisModuleString *ele);
static int (*RedisModule_ReplyWithError)(RedisModuleCtx *ctx, const char *err);
static int (*RedisModule_ReplyWithLongLong)(RedisModuleCtx *ctx, long long ll);
static int (*RedisModule_ReplyWithCallReply)(RedisModuleCtx *ctx, RedisModuleCallReply *reply);
static int (*RedisModule_WrongArity)(RedisModuleCtx *ctx);
static int (*RedisModule_Replicate)(RedisModuleCtx *ctx, const char *cmd, const char *fmt, ...);
static int (*RedisModule_ReplicateVerbatim)(RedisModuleCtx *ctx);
static RedisModuleCallReply *(*RedisModule_Call)(RedisModuleCtx *ctx, const char *cmd, const char *fmt, ...);
static void (*RedisModule_FreeCallReply)(RedisModuleCallReply *reply);
static const char *(*RedisModule_CallReplyStringPtr)(RedisModuleCallReply *reply, size_t *len);
static int (*RedisModule_CallReplyType)(RedisModuleCallReply *reply);

/* the kind of a string by its first bytes, as format.KIND_LUA's kind() */
static const char *string_kind(const char *p, size_t n) {
    if (n >= 3 && p[0] == 'S' && p[1] == 'M') {
        if (p[2] == 'T') return "tensor";
        if (p[2] == 'M') return "model";
        if (p[2] == 'S') return "script";
    }
    return "string";
}

/* SIMCTL.PUT key value stem: SET unless the key holds another kind; else -SIMCTLKIND 1 <kind>.
 * mode: 0 replicate as SET (replicas and AOF need no module), 1 verbatim (they need it) */
static int put(RedisModuleCtx *ctx, RedisModuleString **argv, int argc, int verbatim) {
    if (argc != 4) return RedisModule_WrongArity(ctx);
    size_t sn;
    const char *stem = RedisModule_StringPtrLen(argv[3], &sn);
    RedisModuleKey *key = RedisModule_OpenKey(ctx, argv[1], RM_READ | RM_WRITE);
    int type = RedisModule_KeyType(key);
    char err[128];
    err[0] = 0;
    if (type == RM_KEYTYPE_STRING) {
        size_t n;
        const char *p = RedisModule_StringDMA(key, &n, RM_READ);
        size_t m = n < 3 ? n : 3;
        if (n != 0 && !(m == sn && memcmp(p, stem, m) == 0))
            strcpy(err, string_kind(p, n));
    } else if (type != RM_KEYTYPE_EMPTY) {  /* list, hash, set, zset, stream or a module's type: TYPE names it */
        RedisModuleCallReply *r = RedisModule_Call(ctx, "TYPE", "s", argv[1]);
        size_t n = 0;
        const char *t = r ? RedisModule_CallReplyStringPtr(r, &n) : NULL;
        if (!t || n > 64) { t = "unknown"; n = 7; }
        memcpy(err, t, n);
        err[n] = 0;
        if (r) RedisModule_FreeCallReply(r);
    }
    if (err[0]) {
        RedisModule_CloseKey(key);
        char msg[160];
        strcpy(msg, "SIMCTLKIND 1 ");
        strcat(msg, err);
        return RedisModule_ReplyWithError(ctx, msg);
    }
    RedisModule_StringSet(key, argv[2]);
    RedisModule_CloseKey(key);
    if (verbatim) RedisModule_ReplicateVerbatim(ctx);
    else RedisModule_Replicate(ctx, "SET", "ss", argv[1], argv[2]);
    return RedisModule_ReplyWithLongLong(ctx, 1);
}
static int put_set(RedisModuleCtx *c, RedisModuleString **a, int n) { return put(c, a, n, 0); }
static int put_verbatim(RedisModuleCtx *c, RedisModuleString **a, int n) { return put(c, a, n, 1); }

/* SIMCTL.PUTCALL key value stem: the same through RedisModule_Call (GETRANGE, then SET with '!': replicated) */
static int put_call(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc != 4) return RedisModule_WrongArity(ctx);
    size_t sn, n = 0;
    const char *stem = RedisModule_StringPtrLen(argv[3], &sn);
    RedisModuleCallReply *r = RedisModule_Call(ctx, "GETRANGE", "scc", argv[1], "0", "2");
    const char *p = (r && RedisModule_CallReplyType(r) == 0) ? RedisModule_CallReplyStringPtr(r, &n) : NULL;
    int ok = p && (n == 0 || (n == sn && memcmp(p, stem, n) == 0));
    if (r) RedisModule_FreeCallReply(r);
    if (!ok) return RedisModule_ReplyWithError(ctx, "SIMCTLKIND 1 other");  /* spike: kind not worked out */
    r = RedisModule_Call(ctx, "SET", "!ss", argv[1], argv[2]);
    RedisModule_FreeCallReply(r);
    return RedisModule_ReplyWithLongLong(ctx, 1);
}

/* SIMCTL.PUSHL key value: RPUSH through the list API (does it wake a BLPOP waiter?) */
static int push_list(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc != 3) return RedisModule_WrongArity(ctx);
    RedisModuleKey *key = RedisModule_OpenKey(ctx, argv[1], RM_READ | RM_WRITE);
    int rc = RedisModule_ListPush(key, RM_LIST_TAIL, argv[2]);
    RedisModule_CloseKey(key);
    if (rc != RM_OK) return RedisModule_ReplyWithError(ctx, "WRONGTYPE not a list");
    RedisModule_ReplicateVerbatim(ctx);
    return RedisModule_ReplyWithLongLong(ctx, 1);
}

/* SIMCTL.PUSHC key value: RPUSH through RedisModule_Call */
static int push_call(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc != 3) return RedisModule_WrongArity(ctx);
    RedisModuleCallReply *r = RedisModule_Call(ctx, "RPUSH", "!ss", argv[1], argv[2]);
    int rc = RedisModule_ReplyWithCallReply(ctx, r);
    RedisModule_FreeCallReply(r);
    return rc;
}

/* SIMCTL.PUTPUSH key value stem list element: SIMCTL.PUT, then RPUSH (list API) of element onto list, both or
 * neither (a FINISH-like step: the output, then the reply); replicated as SET + RPUSH */
static int put_push(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (argc != 6) return RedisModule_WrongArity(ctx);
    RedisModuleKey *list = RedisModule_OpenKey(ctx, argv[4], RM_READ | RM_WRITE);
    int lt = RedisModule_KeyType(list);
    if (lt != RM_KEYTYPE_EMPTY && lt != 2) {
        RedisModule_CloseKey(list);
        return RedisModule_ReplyWithError(ctx, "WRONGTYPE the reply list holds another type");
    }
    size_t sn;
    const char *stem = RedisModule_StringPtrLen(argv[3], &sn);
    RedisModuleKey *key = RedisModule_OpenKey(ctx, argv[1], RM_READ | RM_WRITE);
    int type = RedisModule_KeyType(key);
    if (type != RM_KEYTYPE_EMPTY) {
        size_t n = 0;
        const char *p = type == RM_KEYTYPE_STRING ? RedisModule_StringDMA(key, &n, RM_READ) : NULL;
        if (!(p && (n == 0 || (n >= sn && memcmp(p, stem, sn) == 0)))) {  /* spike: kind named only as 'other' */
            RedisModule_CloseKey(key); RedisModule_CloseKey(list);
            return RedisModule_ReplyWithError(ctx, "SIMCTLKIND 1 other");
        }
    }
    RedisModule_StringSet(key, argv[2]);
    RedisModule_CloseKey(key);
    RedisModule_ListPush(list, RM_LIST_TAIL, argv[5]);
    RedisModule_CloseKey(list);
    RedisModule_Replicate(ctx, "SET", "ss", argv[1], argv[2]);
    RedisModule_Replicate(ctx, "RPUSH", "ss", argv[4], argv[5]);
    return RedisModule_ReplyWithLongLong(ctx, 1);
}

#define GET(name) if (RedisModule_GetApi("RedisModule_" #name, (void *)&RedisModule_##name) != RM_OK) return RM_ERR

int RedisModule_OnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    (void)argv; (void)argc;
    RedisModule_GetApi = (int (*)(const char *, void *))((void **)ctx)[0];
    GET(IsModuleNameBusy); GET(SetModuleAttribs); GET(CreateCommand); GET(OpenKey); GET(CloseKey);
    GET(KeyType); GET(StringDMA); GET(StringSet); GET(StringPtrLen); GET(ListPush); GET(ReplyWithError);
    GET(ReplyWithLongLong); GET(ReplyWithCallReply); GET(WrongArity); GET(Replicate); GET(ReplicateVerbatim);
    GET(Call); GET(FreeCallReply); GET(CallReplyStringPtr); GET(CallReplyType);
    if (RedisModule_IsModuleNameBusy("simctl")) return RM_ERR;
    RedisModule_SetModuleAttribs(ctx, "simctl", 1, RM_APIVER_1);
    if (RedisModule_CreateCommand(ctx, "simctl.put", put_set, "write deny-oom fast", 1, 1, 1) != RM_OK) return RM_ERR;
    if (RedisModule_CreateCommand(ctx, "simctl.putv", put_verbatim, "write deny-oom fast", 1, 1, 1) != RM_OK)
        return RM_ERR;
    if (RedisModule_CreateCommand(ctx, "simctl.putcall", put_call, "write deny-oom", 1, 1, 1) != RM_OK) return RM_ERR;
    if (RedisModule_CreateCommand(ctx, "simctl.pushl", push_list, "write deny-oom fast", 1, 1, 1) != RM_OK)
        return RM_ERR;
    if (RedisModule_CreateCommand(ctx, "simctl.pushc", push_call, "write deny-oom", 1, 1, 1) != RM_OK) return RM_ERR;
    if (RedisModule_CreateCommand(ctx, "simctl.putpush", put_push, "write deny-oom fast", 1, 4, 3) != RM_OK)
        return RM_ERR;
    return RM_OK;
}
