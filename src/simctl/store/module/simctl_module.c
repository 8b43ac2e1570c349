/* simctl's server module: the run_model round's three kind-checking Lua scripts as commands.
 *
 *   SIMCTL.PUT key value stem                  = keyspace.PUT    (EVALSHA sha 1 key value stem)
 *   SIMCTL.SUBMIT numkeys key [key ...] arg...  = protocol.SUBMIT (EVALSHA sha numkeys key... arg...)
 *   SIMCTL.FINISH numkeys key [key ...] arg...  = fastround.FINISH
 *
 * Same keys, arguments, replies, refusals (-SIMCTLKIND <i> <kind>) and pushed bytes as the scripts;
 * see simctl/store/servermodule.py for the differences (a malformed call or a key of the wrong type
 * is refused before anything is written, where a script stops half way). Every write is replicated
 * as a plain command (SET, RPUSH, PEXPIREAT, DEL, LREM): an AOF or a replica needs no module.
 *
 * No redismodule.h: the few API functions used are declared here (their documented signatures) and
 * their addresses asked of the server through the GetApi pointer, the first field of the context.
 * No libc either: gcc -O2 -fPIC -shared -nostdlib builds it with gcc alone (the builtins below are
 * inlined or resolved in the server process when it loads the module). */
#include <stddef.h>
#define memcmp __builtin_memcmp
#define memcpy __builtin_memcpy

typedef struct RedisModuleCtx RedisModuleCtx;
typedef struct RedisModuleString RedisModuleString;
typedef struct RedisModuleKey RedisModuleKey;
typedef struct RedisModuleCallReply RedisModuleCallReply;
typedef int (*RedisModuleCmdFunc)(RedisModuleCtx *ctx, RedisModuleString **argv, int argc);

#define OK 0
#define ERR 1
#define READ (1 << 0)
#define WRITE (1 << 1)
enum { T_EMPTY, T_STRING, T_LIST, T_HASH, T_SET, T_ZSET, T_MODULE, T_STREAM };
#define LIST_TAIL 1
#define REPLY_STRING 0
#define REPLY_INTEGER 2
#define NOTIFY_GENERIC (1 << 2)
#define NOTIFY_STRING (1 << 3)
#define NOTIFY_LIST (1 << 4)
/* a string this short may be embstr- or int-encoded, which StringDMA re-encodes (even to read it):
 * read with GET instead (embstr ends at 44 bytes in redis 7.0, later in valkey 9) */
#define SHORT 256
/* protocol.REPLY_TTL, in milliseconds (the Python side checks they agree) */
#define REPLY_TTL_MS 60000LL
#define WRONGTYPE "WRONGTYPE Operation against a key holding the wrong kind of value"

static int (*RedisModule_GetApi)(const char *, void *);
static int (*RedisModule_IsModuleNameBusy)(const char *name);
static void (*RedisModule_SetModuleAttribs)(RedisModuleCtx *ctx, const char *name, int ver, int apiver);
static int (*RedisModule_CreateCommand)(RedisModuleCtx *ctx, const char *name, RedisModuleCmdFunc f,
                                        const char *flags, int firstkey, int lastkey, int keystep);
static RedisModuleKey *(*RedisModule_OpenKey)(RedisModuleCtx *ctx, RedisModuleString *name, int mode);
static void (*RedisModule_CloseKey)(RedisModuleKey *key);
static int (*RedisModule_KeyType)(RedisModuleKey *key);
static size_t (*RedisModule_ValueLength)(RedisModuleKey *key);
static char *(*RedisModule_StringDMA)(RedisModuleKey *key, size_t *len, int mode);
static int (*RedisModule_StringSet)(RedisModuleKey *key, RedisModuleString *str);
static const char *(*RedisModule_StringPtrLen)(const RedisModuleString *str, size_t *len);
static int (*RedisModule_StringToLongLong)(const RedisModuleString *str, long long *ll);
static RedisModuleString *(*RedisModule_CreateString)(RedisModuleCtx *ctx, const char *ptr, size_t len);
static void (*RedisModule_FreeString)(RedisModuleCtx *ctx, RedisModuleString *str);
static int (*RedisModule_ListPush)(RedisModuleKey *key, int where, RedisModuleString *ele);
static int (*RedisModule_DeleteKey)(RedisModuleKey *key);
static int (*RedisModule_SetAbsExpire)(RedisModuleKey *key, long long expire);
static long long (*RedisModule_Milliseconds)(void);
static int (*RedisModule_ReplyWithError)(RedisModuleCtx *ctx, const char *err);
static int (*RedisModule_ReplyWithLongLong)(RedisModuleCtx *ctx, long long ll);
static int (*RedisModule_WrongArity)(RedisModuleCtx *ctx);
static int (*RedisModule_Replicate)(RedisModuleCtx *ctx, const char *cmd, const char *fmt, ...);
static RedisModuleCallReply *(*RedisModule_Call)(RedisModuleCtx *ctx, const char *cmd, const char *fmt, ...);
static void (*RedisModule_FreeCallReply)(RedisModuleCallReply *reply);
static const char *(*RedisModule_CallReplyStringPtr)(RedisModuleCallReply *reply, size_t *len);
static int (*RedisModule_CallReplyType)(RedisModuleCallReply *reply);
static long long (*RedisModule_CallReplyInteger)(RedisModuleCallReply *reply);
static int (*RedisModule_NotifyKeyspaceEvent)(RedisModuleCtx *ctx, int type, const char *event,
                                              RedisModuleString *key);
static int (*RedisModule_IsKeysPositionRequest)(RedisModuleCtx *ctx);
static void (*RedisModule_KeyAtPos)(RedisModuleCtx *ctx, int pos);
static void *(*RedisModule_Alloc)(size_t bytes);
static void *(*RedisModule_Realloc)(void *ptr, size_t bytes);
static void (*RedisModule_Free)(void *ptr);

/* ---- reading a key ------------------------------------------------------------------------------ */

/* The bytes of the string key k (open for reading, of type T_STRING; name: its name), without
 * changing it: *hold, when set, is the call reply the bytes live in (the caller frees it). */
static const char *peek(RedisModuleCtx *ctx, RedisModuleKey *k, RedisModuleString *name, size_t *len,
                        RedisModuleCallReply **hold) {
    *hold = NULL;
    if (RedisModule_ValueLength(k) > SHORT) return RedisModule_StringDMA(k, len, READ);
    *hold = RedisModule_Call(ctx, "GET", "s", name);
    if (*hold && RedisModule_CallReplyType(*hold) == REPLY_STRING)
        return RedisModule_CallReplyStringPtr(*hold, len);
    *len = 0;
    return "";
}

/* What KIND_LUA's kind(k) answers for the key named `name` ("none", "tensor", "model", "script",
 * "string", "list", "hash"...), copied into out (at least 80 bytes); its length. */
static size_t kind(RedisModuleCtx *ctx, RedisModuleString *name, char *out) {
    static const char *types[] = {"none", "string", "list", "hash", "set", "zset", "module", "stream"};
    RedisModuleKey *k = RedisModule_OpenKey(ctx, name, READ);
    int type = RedisModule_KeyType(k);
    const char *found = type >= 0 && type <= T_STREAM ? types[type] : "unknown";
    size_t n;
    RedisModuleCallReply *hold = NULL;
    if (type == T_STRING) {
        const char *p = peek(ctx, k, name, &n, &hold);
        found = "string";
        if (n >= 3 && p[0] == 'S' && p[1] == 'M') {
            if (p[2] == 'T') found = "tensor";
            else if (p[2] == 'M') found = "model";
            else if (p[2] == 'S') found = "script";
        }
    } else if (type == T_MODULE) {  /* another module's type: TYPE names it */
        hold = RedisModule_Call(ctx, "TYPE", "s", name);
        const char *t = hold ? RedisModule_CallReplyStringPtr(hold, &n) : NULL;
        if (t && n < 80) {
            memcpy(out, t, n);
            RedisModule_FreeCallReply(hold);
            RedisModule_CloseKey(k);
            return n;
        }
    }
    if (hold) RedisModule_FreeCallReply(hold);
    RedisModule_CloseKey(k);
    for (n = 0; found[n]; n++) out[n] = found[n];
    return n;
}

/* 1 when the key named `name` is absent or a string whose first 3 bytes are stem (sn of them: fewer
 * when the string is shorter) or empty; the keys PUT and FINISH overwrite without a closer look */
static int plain(RedisModuleCtx *ctx, RedisModuleString *name, const char *stem, size_t sn) {
    RedisModuleKey *k = RedisModule_OpenKey(ctx, name, READ);
    int type = RedisModule_KeyType(k), ok = type == T_EMPTY;
    if (type == T_STRING) {
        size_t n;
        RedisModuleCallReply *hold;
        const char *p = peek(ctx, k, name, &n, &hold);
        size_t m = n < 3 ? n : 3;
        ok = n == 0 || (m == sn && memcmp(p, stem, m) == 0);
        if (hold) RedisModule_FreeCallReply(hold);
    }
    RedisModule_CloseKey(k);
    return ok;
}

/* whether the key named `name` is absent or a list */
static int list_or_none(RedisModuleCtx *ctx, RedisModuleString *name) {
    RedisModuleKey *k = RedisModule_OpenKey(ctx, name, READ);
    int type = RedisModule_KeyType(k);
    RedisModule_CloseKey(k);
    return type == T_EMPTY || type == T_LIST;
}

/* ---- replies ------------------------------------------------------------------------------------ */

static size_t put_text(char *out, size_t at, const char *s) {
    while (*s) out[at++] = *s++;
    return at;
}

static size_t put_number(char *out, size_t at, unsigned long long v) {
    char digits[24];
    size_t n = 0;
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) out[at++] = digits[--n];
    return at;
}

/* -SIMCTLKIND <i> <kind>: the scripts' refusal (format.KIND_ERROR) */
static int refuse(RedisModuleCtx *ctx, int i, RedisModuleString *name) {
    char msg[128];
    size_t at = put_number(msg, put_text(msg, 0, "SIMCTLKIND "), (unsigned long long)i);
    msg[at++] = ' ';
    at += kind(ctx, name, msg + at);
    msg[at] = 0;
    return RedisModule_ReplyWithError(ctx, msg);
}

/* ---- the commands ------------------------------------------------------------------------------- */

/* the one writer of a string key: SET's effect, its notification and its replication */
static void set(RedisModuleCtx *ctx, RedisModuleString *name, RedisModuleString *value) {
    RedisModuleKey *k = RedisModule_OpenKey(ctx, name, READ | WRITE);
    RedisModule_StringSet(k, value);
    RedisModule_CloseKey(k);
    RedisModule_NotifyKeyspaceEvent(ctx, NOTIFY_STRING, "set", name);
    RedisModule_Replicate(ctx, "SET", "ss", name, value);
}

/* SIMCTL.PUT key value stem: keyspace.PUT (SET unless the key holds another kind) */
static int cmd_put(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (RedisModule_IsKeysPositionRequest(ctx)) { RedisModule_KeyAtPos(ctx, 1); return OK; }
    if (argc != 4) return RedisModule_WrongArity(ctx);
    size_t sn;
    const char *stem = RedisModule_StringPtrLen(argv[3], &sn);
    /* (the script's second look, kind(key) == kinds[stem], cannot pass where this one failed) */
    if (!plain(ctx, argv[1], stem, sn)) return refuse(ctx, 1, argv[1]);
    set(ctx, argv[1], argv[2]);
    return RedisModule_ReplyWithLongLong(ctx, 1);
}

/* numkeys of an EVAL-shaped call (argv[1]), checked as EVAL does; -1 after replying with the error */
static long long numkeys(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    long long n;
    if (RedisModule_StringToLongLong(argv[1], &n) != OK) {
        RedisModule_ReplyWithError(ctx, "ERR value is not an integer or out of range");
        return -1;
    }
    if (n > argc - 2) {
        RedisModule_ReplyWithError(ctx, "ERR Number of keys can't be greater than number of args");
        return -1;
    }
    if (n < 0) {
        RedisModule_ReplyWithError(ctx, "ERR Number of keys can't be negative");
        return -1;
    }
    return n;
}

/* the getkeys-api answer of an EVAL-shaped call: every key (none when numkeys is wrong) */
static int eval_keys(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    long long n;
    if (argc >= 2 && RedisModule_StringToLongLong(argv[1], &n) == OK && n >= 0 && n <= argc - 2)
        for (int i = 0; i < n; i++) RedisModule_KeyAtPos(ctx, 2 + i);
    return OK;
}

/* a growing byte buffer (the request SUBMIT pushes) */
typedef struct { char *p; size_t n, cap; } Buf;

static void grow(Buf *b, size_t more) {
    if (b->n + more <= b->cap) return;
    size_t cap = b->cap * 2;
    if (cap < b->n + more) cap = b->n + more;
    b->p = RedisModule_Realloc(b->p, cap);
    b->cap = cap;
}

static void add(Buf *b, const char *p, size_t n) {
    grow(b, n);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

/* a section: "<n>:" and the n bytes */
static void section(Buf *b, const char *p, size_t n) {
    char head[24];
    size_t at = put_number(head, 0, n);
    head[at++] = ':';
    add(b, head, at);
    add(b, p, n);
}

/* SIMCTL.SUBMIT numkeys queue model input... output... header limit ninputs: protocol.SUBMIT (RPUSH of
 * the header, a newline and the sections onto the queue; the queue's length) */
static int cmd_submit(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (RedisModule_IsKeysPositionRequest(ctx)) return eval_keys(ctx, argv, argc);
    if (argc < 2) return RedisModule_WrongArity(ctx);
    long long nk = numkeys(ctx, argv, argc), limit, ins;
    if (nk < 0) return OK;
    RedisModuleString **keys = argv + 2, **args = argv + 2 + nk;
    int nargs = argc - 2 - (int)nk;
    if (nk < 2 || nargs < 3)
        return RedisModule_ReplyWithError(ctx, "ERR simctl.submit takes the queue, the model and the inputs and "
                                               "outputs as keys, and header, limit, input count as arguments");
    if (RedisModule_StringToLongLong(args[1], &limit) != OK || RedisModule_StringToLongLong(args[2], &ins) != OK ||
        ins < 0 || ins > nk - 2)
        return RedisModule_ReplyWithError(ctx, "ERR simctl.submit: the limit and the input count must be integers, "
                                               "the count between 0 and the number of keys after the model");
    if (!list_or_none(ctx, keys[0])) return RedisModule_ReplyWithError(ctx, WRONGTYPE);
    size_t hn;
    const char *header = RedisModule_StringPtrLen(args[0], &hn);
    Buf b = {NULL, 0, 0};
    grow(&b, hn + 1 + 32 * (size_t)nk);
    add(&b, header, hn);
    add(&b, "\n", 1);
    for (long long i = 2; i < 2 + ins; i++) {  /* inputs: carried when 0 < length <= limit */
        RedisModuleKey *k = RedisModule_OpenKey(ctx, keys[i], READ);
        size_t n = RedisModule_KeyType(k) == T_STRING ? RedisModule_ValueLength(k) : 0;
        if (n > 0 && limit >= 0 && n <= (unsigned long long)limit) {
            RedisModuleCallReply *hold;
            const char *p = peek(ctx, k, keys[i], &n, &hold);
            section(&b, p, n);
            if (hold) RedisModule_FreeCallReply(hold);
        } else {
            add(&b, "-", 1);
        }
        RedisModule_CloseKey(k);
    }
    {   /* the model's (script's) header: "SM..", at least 8 bytes; up to 8 + its length field (LE 32 bits) */
        RedisModuleKey *k = RedisModule_OpenKey(ctx, keys[1], READ);
        size_t n = 0;
        RedisModuleCallReply *hold = NULL;
        const char *p = RedisModule_KeyType(k) == T_STRING ? peek(ctx, k, keys[1], &n, &hold) : NULL;
        if (p && n >= 8 && p[0] == 'S' && p[1] == 'M') {
            const unsigned char *u = (const unsigned char *)p;
            unsigned long long want = 8ULL + u[4] + (u[5] << 8) + ((unsigned long long)u[6] << 16) +
                                      ((unsigned long long)u[7] << 24);
            section(&b, p, want < n ? want : n);
        } else {
            add(&b, "-", 1);
        }
        if (hold) RedisModule_FreeCallReply(hold);
        RedisModule_CloseKey(k);
    }
    for (long long i = 2 + ins; i < nk; i++) {  /* outputs: the kind when it is another than a tensor */
        char found[80];
        size_t n = kind(ctx, keys[i], found);
        if ((n == 4 && memcmp(found, "none", 4) == 0) || (n == 6 && memcmp(found, "tensor", 6) == 0))
            add(&b, "-", 1);
        else section(&b, found, n);
    }
    RedisModuleString *elem = RedisModule_CreateString(ctx, b.p, b.n);
    RedisModule_Free(b.p);
    RedisModuleKey *q = RedisModule_OpenKey(ctx, keys[0], READ | WRITE);
    RedisModule_ListPush(q, LIST_TAIL, elem);
    long long length = (long long)RedisModule_ValueLength(q);
    RedisModule_CloseKey(q);
    RedisModule_NotifyKeyspaceEvent(ctx, NOTIFY_LIST, "rpush", keys[0]);
    RedisModule_Replicate(ctx, "RPUSH", "ss", keys[0], elem);
    RedisModule_FreeString(ctx, elem);
    return RedisModule_ReplyWithLongLong(ctx, length);
}

/* SIMCTL.FINISH numkeys output... reply taken value... reply-element [request]: fastround.FINISH (SET
 * the outputs unless one holds another kind than a tensor, RPUSH the reply, its list's expiry, DEL the
 * taken list or LREM the request from it; 1) */
static int cmd_finish(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    if (RedisModule_IsKeysPositionRequest(ctx)) return eval_keys(ctx, argv, argc);
    if (argc < 2) return RedisModule_WrongArity(ctx);
    long long nk = numkeys(ctx, argv, argc);
    if (nk < 0) return OK;
    RedisModuleString **keys = argv + 2, **args = argv + 2 + nk;
    long long n = nk - 2, nargs = argc - 2 - nk;
    if (n < 0 || nargs < n + 1)
        return RedisModule_ReplyWithError(ctx, "ERR simctl.finish takes the outputs, the reply list and the taken "
                                               "list as keys, and the outputs' values, the reply and optionally "
                                               "the request as arguments");
    int lrem = nargs >= n + 2;
    for (long long i = 0; i < n; i++)  /* (the script's kind(), when this look fails, is never none or tensor) */
        if (!plain(ctx, keys[i], "SMT", 3)) return refuse(ctx, (int)i + 1, keys[i]);
    if (!list_or_none(ctx, keys[n]) || (lrem && !list_or_none(ctx, keys[n + 1])))
        return RedisModule_ReplyWithError(ctx, WRONGTYPE);
    for (long long i = 0; i < n; i++) set(ctx, keys[i], args[i]);
    RedisModuleString *reply = keys[n], *taken = keys[n + 1];
    RedisModuleKey *k = RedisModule_OpenKey(ctx, reply, READ | WRITE);
    RedisModule_ListPush(k, LIST_TAIL, args[n]);
    long long at = RedisModule_Milliseconds() + REPLY_TTL_MS;
    RedisModule_SetAbsExpire(k, at);
    RedisModule_CloseKey(k);
    RedisModule_NotifyKeyspaceEvent(ctx, NOTIFY_LIST, "rpush", reply);
    RedisModule_NotifyKeyspaceEvent(ctx, NOTIFY_GENERIC, "expire", reply);
    RedisModule_Replicate(ctx, "RPUSH", "ss", reply, args[n]);
    RedisModule_Replicate(ctx, "PEXPIREAT", "sl", reply, at);
    if (lrem) {  /* LREM itself (notifications, and the key deleted when emptied), replicated when it removed */
        RedisModuleCallReply *r = RedisModule_Call(ctx, "LREM", "scs", taken, "1", args[n + 1]);
        if (r && RedisModule_CallReplyType(r) == REPLY_INTEGER && RedisModule_CallReplyInteger(r) > 0)
            RedisModule_Replicate(ctx, "LREM", "scs", taken, "1", args[n + 1]);
        if (r) RedisModule_FreeCallReply(r);
    } else {
        k = RedisModule_OpenKey(ctx, taken, READ | WRITE);
        if (RedisModule_KeyType(k) != T_EMPTY) {
            RedisModule_DeleteKey(k);
            RedisModule_CloseKey(k);
            RedisModule_NotifyKeyspaceEvent(ctx, NOTIFY_GENERIC, "del", taken);
            RedisModule_Replicate(ctx, "DEL", "s", taken);
        } else {
            RedisModule_CloseKey(k);
        }
    }
    return RedisModule_ReplyWithLongLong(ctx, 1);
}

/* ---- loading ------------------------------------------------------------------------------------ */

#define GET(name) if (RedisModule_GetApi("RedisModule_" #name, (void *)&RedisModule_##name) != OK) return ERR

int RedisModule_OnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    (void)argv; (void)argc;
    RedisModule_GetApi = (int (*)(const char *, void *))((void **)ctx)[0];
    GET(IsModuleNameBusy); GET(SetModuleAttribs); GET(CreateCommand); GET(OpenKey); GET(CloseKey); GET(KeyType);
    GET(ValueLength); GET(StringDMA); GET(StringSet); GET(StringPtrLen); GET(StringToLongLong); GET(CreateString);
    GET(FreeString); GET(ListPush); GET(DeleteKey); GET(SetAbsExpire); GET(Milliseconds); GET(ReplyWithError);
    GET(ReplyWithLongLong); GET(WrongArity); GET(Replicate); GET(Call); GET(FreeCallReply); GET(CallReplyStringPtr);
    GET(CallReplyType); GET(CallReplyInteger); GET(NotifyKeyspaceEvent); GET(IsKeysPositionRequest); GET(KeyAtPos);
    GET(Alloc); GET(Realloc); GET(Free);
    if (RedisModule_IsModuleNameBusy("simctl")) return ERR;
    RedisModule_SetModuleAttribs(ctx, "simctl", 1, 1);
    if (RedisModule_CreateCommand(ctx, "simctl.put", cmd_put, "write deny-oom fast", 1, 1, 1) != OK ||
        RedisModule_CreateCommand(ctx, "simctl.submit", cmd_submit, "write deny-oom getkeys-api", 0, 0, 0) != OK ||
        RedisModule_CreateCommand(ctx, "simctl.finish", cmd_finish, "write deny-oom getkeys-api", 0, 0, 0) != OK)
        return ERR;
    return OK;
}
