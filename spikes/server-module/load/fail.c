int RedisModule_OnLoad(void *c, void **a, int n) { (void)c; (void)a; (void)n; return 1; }
