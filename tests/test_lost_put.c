/* tests/test_lost_put.c — a put object whose only copy died with its node is
 * live again when the same ref is put again (white-box: the put goes through
 * loom__client_put_with_ref, the path of loom_put and loom_library_load, with a ref
 * the test chooses).  A real head and node daemons started with the loom
 * binary: driver 1 puts, its node is killed (the object is lost: a get says
 * so), a new node joins, driver 2 puts the same ref, and every driver reads
 * the bytes again. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "api/client_internal.h"
#include "runtime/ids.h"
#include "test_api_util.h"

static char dir[256], cmd[1024];

static int sh(const char *fmt, const char *a)
{
    snprintf(cmd, sizeof cmd, fmt, LOOM_BIN_PATH, dir, a);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static loom_client *connect_dir(void)
{
    loom_connect_opts o;
    memset(&o, 0, sizeof o);
    o.state_dir = dir;
    loom_client *c = NULL;
    REQUIRE(loom_connect(NULL, &o, &c) == LOOM_OK && c);
    return c;
}

static int alive_nodes(loom_client *c)
{
    char *json = NULL;
    if (loom_status_json(c, &json)) return -1;
    int n = 0;
    for (const char *p = json; (p = strstr(p, "\"state\":\"alive\"")); p++) n++;
    free(json);
    return n;
}

/* the pid of the (one) node daemon started on the state dir */
static int node_pid(void)
{
    snprintf(cmd, sizeof cmd, "pgrep -f -- '_node .*--state-dir %s( |$)'", dir);
    FILE *p = popen(cmd, "r");
    int pid = 0;
    if (p && fscanf(p, "%d", &pid) != 1) pid = 0;
    if (p) pclose(p);
    return pid;
}

static int wait_alive(loom_client *c, int want)
{
    for (int i = 0; i < 150; i++) {
        if (alive_nodes(c) == want) return 1;
        usleep(100000);
    }
    return 0;
}

int main(void)
{
    t_setup_env();
    snprintf(dir, sizeof dir, "/tmp/loom-test-lost-put-XXXXXX");
    REQUIRE(mkdtemp(dir));
    REQUIRE(sh("%s start --head --port 0 --state-dir %s --num-cpus 1 --heartbeat-timeout-ms 2000%s >/dev/null", "") == 0);

    size_t len = 256 << 10; /* not inline: its bytes live in a node's store */
    char *data = malloc(len);
    REQUIRE(data);
    for (size_t i = 0; i < len; i++) data[i] = (char)(i * 7 + 3);
    loom_ref ref;
    uint8_t id[32];
    for (int i = 0; i < 32; i++) id[i] = (uint8_t)(0xa0 + i);
    loom__ref_make(id, 0, &ref);

    loom_client *c1 = connect_dir();
    CHECK_RC(loom__client_put_with_ref(c1, &ref, data, len, 0), LOOM_OK);
    loom_value *v = NULL;
    CHECK_RC(loom_get(c1, ref, 10000, &v), LOOM_OK);
    CHECK(v && loom_value_size(v) == len && !memcmp(loom_value_data(v), data, len));
    loom_value_release(&v);

    int pid = node_pid();
    CHECK(alive_nodes(c1) == 1 && pid > 0);
    if (pid > 0) kill(pid, SIGKILL);
    CHECK(wait_alive(c1, 0));
    loom_client *c2 = connect_dir();
    CHECK(loom_get(c2, ref, 5000, &v) != LOOM_OK); /* lost with its node */
    CHECK_ERR_HAS(c2, "lost");

    char addr[300] = "";
    snprintf(cmd, sizeof cmd, "%s/address", dir);
    FILE *f = fopen(cmd, "r");
    REQUIRE(f && fgets(addr, sizeof addr, f));
    fclose(f);
    addr[strcspn(addr, "\n")] = 0;
    REQUIRE(sh("%s start --state-dir %s --num-cpus 1 --address %s >/dev/null", addr) == 0);
    CHECK(wait_alive(c2, 1));

    loom_client *c3 = connect_dir(); /* its home is the new node */
    CHECK_RC(loom__client_put_with_ref(c3, &ref, data, len, 0), LOOM_OK);
    CHECK_RC(loom_get(c3, ref, 10000, &v), LOOM_OK);
    CHECK(v && loom_value_size(v) == len && !memcmp(loom_value_data(v), data, len));
    loom_value_release(&v);
    /* c3's own get answers from c3's copy, without the head: a request the
       head answers makes sure it has read the put before c2 asks (c2 would
       otherwise be told, rightly, that the object is still lost) */
    char *status = NULL;
    CHECK_RC(loom_status_json(c3, &status), LOOM_OK);
    free(status);
    CHECK_RC(loom_get(c2, ref, 10000, &v), LOOM_OK); /* the driver that saw it lost too */
    CHECK(v && loom_value_size(v) == len);
    loom_value_release(&v);

    loom_disconnect(&c3);
    loom_disconnect(&c2);
    loom_disconnect(&c1);
    free(data);
    sh("%s stop --state-dir %s%s >/dev/null 2>&1", "");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return TEST_DONE();
}
